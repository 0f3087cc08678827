#!/usr/bin/env bash
# What the test suite needs beyond PostgreSQL and Kafka: Debian's Chromium for the page tests,
# iproute2 and nftables for the network namespaces of the two-host and the network-fault tests
# (their cuts and losses), openssl for the TLS tests' certificates,
# Prometheus (the server and promtool) for the monitoring tests, and docker-compose (Debian's
# 1.29, no Docker engine needed) to validate docker-compose.yml.
source "$(dirname "$0")/lib.sh"
ensure_apt chromium iproute2 nftables openssl docker-compose

# The monitoring tests run the prometheus binary themselves, on a free port with their own
# configuration: the package's service must not start. A policy-rc.d that refuses every start
# (unless the machine has one already, as containers do) covers its install.
if ! command -v prometheus >/dev/null; then
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    ensure_apt prometheus
    if [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
fi
