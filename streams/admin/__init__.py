"""Administration of the broker and registry: topics and schemas."""
