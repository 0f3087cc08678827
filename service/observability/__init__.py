"""What the processes tell operators: Prometheus metrics shared across processes, the metrics
listener on its own port, and logging (text or JSON)."""
