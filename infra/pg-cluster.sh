#!/usr/bin/env bash
# A PostgreSQL primary and a synchronous standby under Patroni, with a one-node etcd as its
# consensus store, for the high-availability tests: Debian's patroni, etcd-server and
# PostgreSQL, nothing from Docker. Usage: pg-cluster.sh up|down|status
# Ports from PG_CLUSTER_BASE_PORT (25470, below Linux's ephemeral range 32768-60999, where a
# test's outgoing connection or port-0 listener could hold one): etcd client +0 and peer +1,
# PostgreSQL nodes +2 and +3, their Patroni REST APIs +4 and +5. Both commands are idempotent: `up` on a running
# cluster only waits for its leader, `down` on a stopped one does nothing.
# Short ttl/loop_wait/retry_timeout and primary_start_timeout 0 make a crashed primary's
# Patroni hand over to the standby at once instead of restarting it in place; use_pg_rewind
# lets the old primary rejoin as a standby.
source "$(dirname "$0")/lib.sh"

BASE=${PG_CLUSTER_BASE_PORT:-25470}
NAME=${POSTGRES_CLUSTER:-orderservice}-ha
USER_NAME=${POSTGRES_USER:-orders}
PASSWORD=${POSTGRES_PASSWORD:-orders}
DB_NAME=${POSTGRES_DB:-orders}
# Owned by postgres, outside the checkout, which postgres may not be able to enter; one per
# port set, since etcd and Patroni keep the addresses they were first started with.
DIR=/var/lib/postgresql/patroni-$NAME-$BASE
PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)

as_postgres() { runuser -u postgres -- "$@"; }

node_config() {
    local node=$1 pg_port=$((BASE + 1 + $1)) api_port=$((BASE + 3 + $1))
    cat >"$DIR/node$node.yml" <<YAML
scope: $NAME
name: node$node
restapi:
  listen: 127.0.0.1:$api_port
  connect_address: 127.0.0.1:$api_port
etcd3:
  hosts: 127.0.0.1:$BASE
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    primary_start_timeout: 0
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_connections: 100
        shared_buffers: 128MB
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $DIR/node$node
  bin_dir: /usr/lib/postgresql/$PG_VERSION/bin
  pgpass: $DIR/node$node.pgpass
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: rewinder, password: rewinder}
  parameters:
    unix_socket_directories: $DIR
YAML
}

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

# The last lines of every daemon's log, for an error that needs them.
logs() {
    local log
    for log in "$DIR"/*.log; do
        say "--- last lines of $log"
        tail -n 15 "$log" >&2 || true
    done
}

fail() {
    say "error: $*"
    logs
    exit 1
}

start_daemon() {
    local name=$1 port=$2
    shift 2
    running "$name" && return 0
    port_open "$port" && fail "port $port, for $name, is taken by another program; set PG_CLUSTER_BASE_PORT"
    rm -f "$DIR/$name.pid"
    # The daemon writes its own pid (runuser's would not stop it), in a session of its own.
    runuser -u postgres -- setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/$name.pid" "$@" \
        >>"$DIR/$name.log" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        running "$name" && return 0
        sleep 0.1
    done
    fail "$name did not start"
}

leader_port() {
    local node
    for node in 1 2; do
        if curl -fs -o /dev/null "http://127.0.0.1:$((BASE + 3 + node))/primary"; then
            echo $((BASE + 1 + node))
            return 0
        fi
    done
    return 1
}

wait_for_leader() {
    local i
    for ((i = 0; i < 1200; i++)); do
        leader_port && return 0
        sleep 0.1
    done
    fail "no Patroni leader within 120s"
}

# The leader's PostgreSQL answering a query: Patroni may call itself leader a moment before
# its server takes connections on the socket.
wait_for_sql() {
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        as_postgres psql -X -q -h "$DIR" -p "$port" -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "the leader on port $port took no query within 30s"
}

up() {
    ensure_apt patroni etcd-server curl
    mkdir -p "$DIR"
    chown postgres:postgres "$DIR"
    chmod 700 "$DIR"
    start_daemon etcd "$BASE" etcd --name etcd1 --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$BASE" --advertise-client-urls "http://127.0.0.1:$BASE" \
        --listen-peer-urls "http://127.0.0.1:$((BASE + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 1))" \
        --initial-cluster "etcd1=http://127.0.0.1:$((BASE + 1))"
    wait_for_port "$BASE" 30 etcd
    for node in 1 2; do
        node_config "$node"
        chown postgres:postgres "$DIR/node$node.yml"
        running "patroni$node" || ! port_open $((BASE + 1 + node)) ||
            fail "port $((BASE + 1 + node)), for node$node's PostgreSQL, is taken; set PG_CLUSTER_BASE_PORT"
        start_daemon "patroni$node" $((BASE + 3 + node)) patroni "$DIR/node$node.yml"
    done
    local port
    port=$(wait_for_leader)
    wait_for_sql "$port"
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -d postgres \
        -v user="$USER_NAME" -v pass="$PASSWORD" -v db="$DB_NAME" <<'SQL' || fail "could not create the role $USER_NAME and database $DB_NAME on port $port"
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
    say "ready: primary on port $port, nodes on $((BASE + 2)),$((BASE + 3))"
}

down() {
    local name
    # Patroni first (each stops its PostgreSQL), etcd last: Patroni needs it to shut down.
    for name in patroni1 patroni2 etcd; do
        running "$name" || continue
        kill -TERM "$(cat "$DIR/$name.pid")"
        while running "$name"; do sleep 0.2; done
        rm -f "$DIR/$name.pid"
    done
    say "stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) leader_port || die "no leader" ;;
    *) die "usage: $0 up|down|status" ;;
esac
