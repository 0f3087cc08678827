"""Recovery commands for operators: moving the consumer group back in time (`replay`), and
reading the times they are given (`when`)."""
