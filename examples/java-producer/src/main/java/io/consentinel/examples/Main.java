package io.consentinel.examples;

import io.apicurio.registry.serde.SerdeConfig;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Writes Consentinel's four input kinds from Java, as a producer team would.
 *
 * <p>Every record is keyed by its owner's id and partitioned by the client's default partitioner
 * (murmur2 of the key, as CONTRACT §1 requires: do not set {@code partitioner.class}). Values go
 * through Apicurio Registry's Avro serde in Confluent-compatible mode: byte 0x00, the 4-byte
 * big-endian content id (the id the registry's {@code /apis/ccompat/v7} API gives the schema),
 * then the Avro body; the schema is the latest one registered under {@code <topic>-value}
 * (TopicNameStrategy), never registered by this producer.
 *
 * <p>Prints one JSON line per record written (topic, partition, offset, key, event_id, kind).
 */
public final class Main {
  private static final String SOURCE = "java-producer";

  private Main() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> options = parse(args);
    String bootstrap =
        options.getOrDefault("bootstrap", env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"));
    String ccompat =
        options.getOrDefault(
            "registry", env("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7"));
    String prefix = options.getOrDefault("prefix", "");
    String run = options.getOrDefault("run", "java");
    int users = Integer.parseInt(options.getOrDefault("users", "6"));

    Properties config = new Properties();
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    // No partitioner.class: the default hashes keys with murmur2, as the gate requires.
    config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, AvroKafkaSerializer.class.getName());
    config.put(SerdeConfig.REGISTRY_URL, options.getOrDefault("apicurio", apicurioUrl(ccompat)));
    config.put(SerdeConfig.ENABLE_CONFLUENT_ID_HANDLER, true); // 0x00 + 4-byte id, no headers
    config.put(SerdeConfig.USE_ID, "contentId"); // the id ccompat/v7 serves
    config.put(SerdeConfig.ENABLE_HEADERS, false);
    config.put(SerdeConfig.AUTO_REGISTER_ARTIFACT, false); // the platform registers schemas
    config.put(SerdeConfig.FIND_LATEST_ARTIFACT, true); // <topic>-value's latest version

    Map<String, Schema> schemas = new HashMap<>();
    for (String name :
        List.of("photo_uploaded", "consent_changed", "photo_share_requested", "training_read")) {
      schemas.put(name, load(name));
    }
    try (KafkaProducer<String, GenericRecord> producer = new KafkaProducer<>(config)) {
      for (Event event : scenario(schemas, run, users, System.currentTimeMillis())) {
        String topic = prefix + event.topic;
        RecordMetadata written =
            producer.send(new ProducerRecord<>(topic, event.key, event.value)).get();
        System.out.printf(
            "{\"topic\":\"%s\",\"partition\":%d,\"offset\":%d,\"key\":\"%s\","
                + "\"event_id\":\"%s\",\"kind\":\"%s\"}%n",
            event.topic, written.partition(), written.offset(), event.key, event.eventId,
            event.kind);
      }
      producer.flush();
    }
  }

  /** The Apicurio v2 API beside a Confluent-compatible URL ({@code .../apis/ccompat/v7}). */
  static String apicurioUrl(String ccompat) {
    int at = ccompat.indexOf("/apis/ccompat/");
    return (at >= 0 ? ccompat.substring(0, at) : ccompat.replaceAll("/+$", ""))
        + "/apis/registry/v2";
  }

  private record Event(String topic, String key, String eventId, String kind, GenericRecord value) {}

  /**
   * The story both example producers write (examples/README.md). For user i: i%3 == 0 consents
   * to ML_TRAINING for IMAGE (ALLOW / CONSENTED); i%3 == 1 never consents (DENY / NO_CONSENT);
   * i%3 == 2 consents for acme-vision, IMAGE, for a day, and is asked FACE_BIOMETRIC too (DENY /
   * CATEGORY_NOT_CONSENTED).
   */
  static List<Event> scenario(Map<String, Schema> schemas, String run, int users, long now) {
    long start = now - 60_000;
    List<Event> events = new ArrayList<>();
    for (int i = 0; i < users; i++) {
      String owner = run + "-u" + i;
      String photo = run + "-p" + i;
      long at = start + i * 10L;
      String uploadId = run + "-upload-" + i;
      GenericRecord upload = record(schemas.get("photo_uploaded"), uploadId, at);
      upload.put("photo_id", photo);
      upload.put("owner_id", owner);
      upload.put("content_sha256", sha256(photo));
      upload.put("media_type", "image/jpeg");
      upload.put("size_bytes", 2048L);
      events.add(new Event("photo.uploads", owner, uploadId, "upload", upload));

      Schema consentSchema = schemas.get("consent_changed");
      List<String> asked = List.of("IMAGE");
      if (i % 3 != 1) {
        String consentId = run + "-consent-" + i;
        GenericRecord consent = record(consentSchema, consentId, at + 1000);
        consent.put("user_id", owner);
        consent.put("purpose", symbol(consentSchema, "purpose", "ML_TRAINING"));
        consent.put("categories", categories(consentSchema, List.of("IMAGE")));
        consent.put("granted", true);
        consent.put("notice_version", "2026-01");
        if (i % 3 == 2) {
          consent.put("recipient_org", "acme-vision");
          consent.put("expires_at", now + 86_400_000L);
          asked = List.of("IMAGE", "FACE_BIOMETRIC");
        }
        events.add(new Event("consent.changes", owner, consentId, "consent", consent));
      }

      Schema shareSchema = schemas.get("photo_share_requested");
      String shareId = run + "-share-" + i;
      GenericRecord share = record(shareSchema, shareId, at + 2000);
      share.put("share_id", shareId);
      share.put("photo_id", photo);
      share.put("owner_id", owner);
      share.put("requester", "java-export-service");
      share.put("recipient_org", "acme-vision");
      share.put("purpose", symbol(shareSchema, "purpose", "ML_TRAINING"));
      share.put("categories", categories(shareSchema, asked));
      events.add(new Event("photo.share.requests", owner, shareId, "share", share));

      Schema readSchema = schemas.get("training_read");
      String readId = run + "-read-" + i;
      GenericRecord read = record(readSchema, readId, at + 3000);
      read.put("job_id", run + "-job");
      read.put("model_id", run + "-model");
      read.put("org", "acme-vision");
      read.put("photo_id", photo);
      read.put("owner_id", owner);
      read.put("purpose", symbol(readSchema, "purpose", "ML_TRAINING"));
      read.put("categories", categories(readSchema, asked));
      events.add(new Event("training.reads", owner, readId, "read", read));
    }
    return events;
  }

  /** A record with the common fields set and every defaulted field at its default. */
  private static GenericRecord record(Schema schema, String eventId, long occurredAt) {
    GenericRecord record = new GenericData.Record(schema);
    for (Schema.Field field : schema.getFields()) {
      if (field.hasDefaultValue()) {
        record.put(field.name(), GenericData.get().getDefaultValue(field));
      }
    }
    record.put("event_id", eventId);
    record.put("occurred_at", occurredAt);
    record.put("source", SOURCE);
    return record;
  }

  private static GenericData.EnumSymbol symbol(Schema schema, String field, String value) {
    return new GenericData.EnumSymbol(schema.getField(field).schema(), value);
  }

  private static GenericData.Array<GenericData.EnumSymbol> categories(
      Schema schema, List<String> values) {
    Schema array = schema.getField("categories").schema();
    GenericData.Array<GenericData.EnumSymbol> out = new GenericData.Array<>(values.size(), array);
    for (String value : values) {
      out.add(new GenericData.EnumSymbol(array.getElementType(), value));
    }
    return out;
  }

  private static Schema load(String name) throws IOException {
    try (InputStream in = Main.class.getResourceAsStream("/schemas/" + name + ".avsc")) {
      if (in == null) {
        throw new IOException("schemas/" + name + ".avsc is not in the jar (rebuild with mvn)");
      }
      return new Schema.Parser().parse(in);
    }
  }

  private static String sha256(String text) {
    try {
      MessageDigest digest = MessageDigest.getInstance("SHA-256");
      return HexFormat.of().formatHex(digest.digest(text.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      if (!args[i].startsWith("--") || i + 1 >= args.length) {
        throw new IllegalArgumentException(
            "usage: java -jar java-producer.jar [--bootstrap B] [--registry CCOMPAT_URL]"
                + " [--apicurio V2_URL] [--prefix P] [--run TAG] [--users N]");
      }
      options.put(args[i].substring(2), args[++i]);
    }
    return options;
  }
}
