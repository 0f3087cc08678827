"""Running the processes: the runner that owns the cache and starts the consumer and granian's
workers together, the consumer's supervisor and its published state, the warm-up, granian's
worker layout and the garbage-collector tuning."""
