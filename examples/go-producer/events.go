package main

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// The four input records (schemas/*.avsc, namespace consentinel.v1). Timestamps are epoch
// milliseconds (long, timestamp-millis); nullable fields are pointers; enums are their symbols.

type photoUploaded struct {
	EventID       string `avro:"event_id"`
	OccurredAt    int64  `avro:"occurred_at"`
	Source        string `avro:"source"`
	PhotoID       string `avro:"photo_id"`
	OwnerID       string `avro:"owner_id"`
	ContentSHA256 string `avro:"content_sha256"`
	MediaType     string `avro:"media_type"`
	SizeBytes     int64  `avro:"size_bytes"`
}

type consentChanged struct {
	EventID       string   `avro:"event_id"`
	OccurredAt    int64    `avro:"occurred_at"`
	Source        string   `avro:"source"`
	UserID        string   `avro:"user_id"`
	Purpose       string   `avro:"purpose"`
	RecipientOrg  *string  `avro:"recipient_org"`
	Categories    []string `avro:"categories"`
	Granted       bool     `avro:"granted"`
	NoticeVersion string   `avro:"notice_version"`
	ExpiresAt     *int64   `avro:"expires_at"`
}

type photoShareRequested struct {
	EventID      string   `avro:"event_id"`
	OccurredAt   int64    `avro:"occurred_at"`
	Source       string   `avro:"source"`
	ShareID      string   `avro:"share_id"`
	PhotoID      string   `avro:"photo_id"`
	OwnerID      string   `avro:"owner_id"`
	Requester    string   `avro:"requester"`
	RecipientOrg string   `avro:"recipient_org"`
	Purpose      string   `avro:"purpose"`
	Categories   []string `avro:"categories"`
}

type trainingRead struct {
	EventID    string   `avro:"event_id"`
	OccurredAt int64    `avro:"occurred_at"`
	Source     string   `avro:"source"`
	JobID      string   `avro:"job_id"`
	ModelID    string   `avro:"model_id"`
	Org        string   `avro:"org"`
	PhotoID    string   `avro:"photo_id"`
	OwnerID    string   `avro:"owner_id"`
	Purpose    string   `avro:"purpose"`
	Categories []string `avro:"categories"`
}

type event struct {
	topic, key, eventID, kind string
	value                     any
}

const source = "go-producer"

// scenario is the story both example producers write (examples/README.md). For user i:
//
//	i%3 == 0: consents to ML_TRAINING by anyone for IMAGE  -> share and read ALLOW / CONSENTED
//	i%3 == 1: never consents                               -> DENY / NO_CONSENT
//	i%3 == 2: consents for acme-vision, IMAGE, for a day;
//	          the share and read also ask FACE_BIOMETRIC    -> DENY / CATEGORY_NOT_CONSENTED
func scenario(run string, users int, now time.Time) []event {
	start := now.Add(-time.Minute).UnixMilli()
	var events []event
	for i := 0; i < users; i++ {
		owner := fmt.Sprintf("%s-u%d", run, i)
		photo := fmt.Sprintf("%s-p%d", run, i)
		id := func(kind string) string { return fmt.Sprintf("%s-%s-%d", run, kind, i) }
		at := start + int64(i)*10

		events = append(events, event{"photo.uploads", owner, id("upload"), "upload", photoUploaded{
			EventID: id("upload"), OccurredAt: at, Source: source, PhotoID: photo, OwnerID: owner,
			ContentSHA256: fmt.Sprintf("%x", sha256.Sum256([]byte(photo))), MediaType: "image/jpeg", SizeBytes: 2048,
		}})
		asked := []string{"IMAGE"}
		switch i % 3 {
		case 0:
			events = append(events, event{"consent.changes", owner, id("consent"), "consent", consentChanged{
				EventID: id("consent"), OccurredAt: at + 1000, Source: source, UserID: owner,
				Purpose: "ML_TRAINING", Categories: []string{"IMAGE"}, Granted: true, NoticeVersion: "2026-01",
			}})
		case 2:
			recipient := "acme-vision"
			expires := now.Add(24 * time.Hour).UnixMilli()
			events = append(events, event{"consent.changes", owner, id("consent"), "consent", consentChanged{
				EventID: id("consent"), OccurredAt: at + 1000, Source: source, UserID: owner,
				Purpose: "ML_TRAINING", RecipientOrg: &recipient, Categories: []string{"IMAGE"},
				Granted: true, NoticeVersion: "2026-01", ExpiresAt: &expires,
			}})
			asked = []string{"IMAGE", "FACE_BIOMETRIC"}
		}
		events = append(events, event{"photo.share.requests", owner, id("share"), "share", photoShareRequested{
			EventID: id("share"), OccurredAt: at + 2000, Source: source, ShareID: id("share"), PhotoID: photo,
			OwnerID: owner, Requester: "go-export-service", RecipientOrg: "acme-vision",
			Purpose: "ML_TRAINING", Categories: asked,
		}})
		events = append(events, event{"training.reads", owner, id("read"), "read", trainingRead{
			EventID: id("read"), OccurredAt: at + 3000, Source: source, JobID: run + "-job",
			ModelID: run + "-model", Org: "acme-vision", PhotoID: photo, OwnerID: owner,
			Purpose: "ML_TRAINING", Categories: asked,
		}})
	}
	return events
}
