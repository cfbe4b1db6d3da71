package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
)

// registry looks up the schema registered under <topic>-value (TopicNameStrategy) through the
// Confluent-compatible API, and writes values in the Confluent wire format with its id.
type registry struct {
	baseURL string
	http    *http.Client
	cache   map[string]registered
}

type registered struct {
	id     uint32
	schema avro.Schema
}

func newRegistry(baseURL string) *registry {
	return &registry{
		baseURL: strings.TrimRight(baseURL, "/"),
		http:    &http.Client{Timeout: 30 * time.Second},
		cache:   map[string]registered{},
	}
}

// lookup returns the latest schema of the topic's value subject; the producer never registers
// one (schemas are registered, FULL_TRANSITIVE, by the platform team).
func (r *registry) lookup(topic string) (registered, error) {
	if found, ok := r.cache[topic]; ok {
		return found, nil
	}
	subject := topic + "-value"
	endpoint := r.baseURL + "/subjects/" + url.PathEscape(subject) + "/versions/latest"
	response, err := r.http.Get(endpoint)
	if err != nil {
		return registered{}, fmt.Errorf("registry %s: %w", endpoint, err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return registered{}, fmt.Errorf("registry: subject %q: HTTP %d (is its schema registered?)", subject, response.StatusCode)
	}
	var body struct {
		ID     uint32 `json:"id"`
		Schema string `json:"schema"`
	}
	if err := json.NewDecoder(response.Body).Decode(&body); err != nil {
		return registered{}, fmt.Errorf("registry: subject %q: %w", subject, err)
	}
	schema, err := avro.Parse(body.Schema)
	if err != nil {
		return registered{}, fmt.Errorf("registry: subject %q: schema id %d: %w", subject, body.ID, err)
	}
	found := registered{id: body.ID, schema: schema}
	r.cache[topic] = found
	return found, nil
}

// encode returns 0x00, the 4-byte big-endian schema id, then the Avro binary body of value.
func (r *registry) encode(topic string, value any) ([]byte, error) {
	found, err := r.lookup(topic)
	if err != nil {
		return nil, err
	}
	body, err := avro.Marshal(found.schema, value)
	if err != nil {
		return nil, fmt.Errorf("encoding for %s (schema id %d): %w", topic, found.id, err)
	}
	framed := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(framed[1:], found.id)
	return append(framed, body...), nil
}
