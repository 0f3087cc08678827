#!/usr/bin/env bash
# What the benchmarks need beyond PostgreSQL and Kafka: wrk, the HTTP load generator.
source "$(dirname "$0")/lib.sh"
ensure_apt wrk
