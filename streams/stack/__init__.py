"""The local single-node stack: a KRaft Kafka broker, an Apicurio registry and Prometheus, no Docker."""
