#!/usr/bin/env bash
# What the test suite needs beyond PostgreSQL and Kafka: Debian's Chromium for the page tests.
source "$(dirname "$0")/lib.sh"
ensure_apt chromium
