"""The order service: Kafka ingest, PostgreSQL storage, shared-memory cache, HTTP API."""
