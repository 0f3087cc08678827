#!/usr/bin/env bash
# What the test suite needs beyond PostgreSQL and Kafka: Debian's Chromium for the page tests,
# iproute2 for the two-host test's network namespaces.
source "$(dirname "$0")/lib.sh"
ensure_apt chromium iproute2
