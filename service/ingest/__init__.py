"""Kafka → validated orders → PostgreSQL → cache: the consumer process and its parts."""
