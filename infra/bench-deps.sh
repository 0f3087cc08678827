#!/usr/bin/env bash
# What the benchmarks need beyond PostgreSQL and Kafka: wrk, the HTTP load generator, and
# nginx, the physical anchor the HTTP benchmark measures beside bare granian.
source "$(dirname "$0")/lib.sh"
ensure_apt wrk nginx-light
