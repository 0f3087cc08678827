#!/usr/bin/env bash
# PgBouncer (Debian's package) in front of the test PostgreSQL, for the tests that check what
# works through it. Usage: pgbouncer.sh up session|transaction, pgbouncer.sh down
# Listens on 127.0.0.1:$PGBOUNCER_PORT (26432, below Linux's ephemeral range) and passes every
# database to 127.0.0.1:$POSTGRES_PORT, authenticating with SCRAM as $POSTGRES_USER. `up`
# replaces a running PgBouncer, so the pool mode asked for is the one running.
source "$(dirname "$0")/lib.sh"

PORT=${PGBOUNCER_PORT:-26432}
PG_PORT=${POSTGRES_PORT:-55432}
USER_NAME=${POSTGRES_USER:-orders}
PASSWORD=${POSTGRES_PASSWORD:-orders}
# Owned by postgres (PgBouncer refuses to run as root), outside the checkout.
DIR=/var/lib/postgresql/pgbouncer-${POSTGRES_CLUSTER:-orderservice}-$PORT

running() { [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; }

down() {
    running || return 0
    kill -TERM "$(cat "$DIR/pgbouncer.pid")"
    while running; do sleep 0.1; done
}

up() {
    local mode=$1
    case "$mode" in session | transaction) ;; *) die "pool mode '$mode': session or transaction" ;; esac
    ensure_apt pgbouncer
    down
    port_open "$PORT" && die "port $PORT is taken by another program; set PGBOUNCER_PORT"
    mkdir -p "$DIR"
    printf '"%s" "%s"\n' "$USER_NAME" "$PASSWORD" >"$DIR/userlist.txt"
    cat >"$DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $DIR/userlist.txt
pool_mode = $mode
default_pool_size = 20
max_client_conn = 200
stats_users = $USER_NAME
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
INI
    chown -R postgres:postgres "$DIR"
    chmod 700 "$DIR"
    runuser -u postgres -- pgbouncer -d "$DIR/pgbouncer.ini" ||
        die "pgbouncer did not start; see $DIR/pgbouncer.log"
    wait_for_port "$PORT" 30 pgbouncer
    say "ready: $mode mode on port $PORT, in front of port $PG_PORT"
}

case "${1:-}" in
    up) up "${2:-}" ;;
    down) down ;;
    *) die "usage: $0 up session|transaction | down" ;;
esac
