"""The local single-node stack: KRaft Kafka, an Apicurio registry and Prometheus, no Docker."""
