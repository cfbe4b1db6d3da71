// Command go-producer writes Consentinel's four input kinds from Go, as a producer team would.
//
// It keys every record by its owner's id, partitions with Kafka's default murmur2 hashing (the
// same partition numbers as the Java client and librdkafka's murmur2_random), and encodes each
// value with the schema registered under <topic>-value, in the Confluent wire format: byte 0x00,
// the 4-byte big-endian schema id, the Avro body (CONTRACT §1).
//
// It prints one JSON line per record written (topic, partition, offset, key, event_id, kind) so
// that a test can check where each record landed and which decision it got.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	bootstrap := flag.String("bootstrap", envOr("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), "Kafka bootstrap servers")
	registryURL := flag.String("registry", envOr("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7"), "Confluent-compatible registry URL")
	prefix := flag.String("prefix", "", "prefix of every topic name (isolated test topics)")
	run := flag.String("run", "go", "a tag making this run's user, photo and event ids unique")
	users := flag.Int("users", 6, "how many users the scenario writes for")
	flag.Parse()
	if err := produce(*bootstrap, *registryURL, *prefix, *run, *users); err != nil {
		fmt.Fprintln(os.Stderr, "go-producer:", err)
		os.Exit(1)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func produce(bootstrap, registryURL, prefix, run string, users int) error {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		// Kafka's default key partitioning: murmur2(key), high bit masked, mod partition count.
		// (nil = kgo.KafkaHasher(murmur2); SaramaCompatHasher would NOT match.)
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()

	registry := newRegistry(registryURL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := json.NewEncoder(os.Stdout)

	for _, event := range scenario(run, users, time.Now()) {
		topic := prefix + event.topic
		value, err := registry.encode(topic, event.value)
		if err != nil {
			return err
		}
		record := &kgo.Record{Topic: topic, Key: []byte(event.key), Value: value}
		written, err := client.ProduceSync(ctx, record).First()
		if err != nil {
			return fmt.Errorf("producing %s to %s: %w", event.eventID, topic, err)
		}
		if err := out.Encode(map[string]any{
			"topic": event.topic, "partition": written.Partition, "offset": written.Offset,
			"key": event.key, "event_id": event.eventID, "kind": event.kind,
		}); err != nil {
			return err
		}
	}
	return nil
}
