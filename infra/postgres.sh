#!/usr/bin/env bash
# PostgreSQL for local runs and tests: a private Debian cluster ("orderservice") on its own
# port, so the machine's main cluster is never touched. Usage: postgres.sh up|down|start|stop
# Two checkouts on one machine run side by side with their own POSTGRES_CLUSTER and POSTGRES_PORT
# (the fault tests stop and start the cluster they were given, never the other one).
# `postgres.sh tls-on CERT KEY` serves TLS with that certificate (the TLS tests make one),
# `postgres.sh tls-off` stops serving it; both reload the running cluster.
source "$(dirname "$0")/lib.sh"

PORT=${POSTGRES_PORT:-55432}
USER_NAME=${POSTGRES_USER:-orders}
PASSWORD=${POSTGRES_PASSWORD:-orders}
DB_NAME=${POSTGRES_DB:-orders}
CLUSTER=${POSTGRES_CLUSTER:-orderservice}

version() { ls /usr/lib/postgresql | sort -V | tail -n 1; }
cluster_status() { pg_lsclusters --no-header | awk -v c="$CLUSTER" '$2 == c {print $4}'; }
as_postgres() { runuser -u postgres -- "$@"; }
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"; }

create_cluster() {
    local v
    v=$(version)
    say "creating cluster $v/$CLUSTER on port $PORT"
    pg_createcluster --start-conf=manual -p "$PORT" "$v" "$CLUSTER" -- \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # Loopback only; fsync stays on: the tests prove durability across restarts. No TLS until
    # tls-on: Debian turns it on with its snakeoil certificate, which no client can verify, so
    # every loopback connection paid for encryption that proves nothing (and tls-off did not
    # stop it), where the compose file's PostgreSQL serves none.
    cat >"/etc/postgresql/$v/$CLUSTER/conf.d/orderservice.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 256MB
ssl = off
CONF
}

start() {
    case "$(cluster_status)" in
        online) say "already running on port $PORT"; return 0 ;;
        "") create_cluster ;;
    esac
    port_open "$PORT" && die "port $PORT is taken by another process; set POSTGRES_PORT to a free port"
    pg_ctlcluster "$(version)" "$CLUSTER" start
    wait_for_port "$PORT" 30 PostgreSQL
}

ensure_role_and_db() {
    psql_admin -v user="$USER_NAME" -v pass="$PASSWORD" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'user', :'pass') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

tls_conf() { echo "/etc/postgresql/$(version)/$CLUSTER/conf.d/zz-tls.conf"; }

tls_on() {
    local cert=$1 key=$2 dir
    [ -r "$cert" ] && [ -r "$key" ] || die "usage: $0 tls-on CERT KEY (readable PEM files)"
    # The server refuses a key that others can read, and cannot read one in root's temp dirs.
    dir=/etc/postgresql/$(version)/$CLUSTER/tls
    install -d -o postgres -g postgres -m 700 "$dir"
    install -o postgres -g postgres -m 600 "$cert" "$dir/server.crt"
    install -o postgres -g postgres -m 600 "$key" "$dir/server.key"
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" \
        "$dir/server.crt" "$dir/server.key" >"$(tls_conf)"
    pg_ctlcluster "$(version)" "$CLUSTER" reload
}

tls_off() {
    rm -f "$(tls_conf)"
    pg_ctlcluster "$(version)" "$CLUSTER" reload
}

stop() {
    [ "$(cluster_status)" = online ] || { say "not running"; return 0; }
    pg_ctlcluster "$(version)" "$CLUSTER" stop -m fast
}

case "${1:-up}" in
    up)
        ensure_apt postgresql libpq-dev
        start
        ensure_role_and_db
        say "ready: postgresql://$USER_NAME@127.0.0.1:$PORT/$DB_NAME"
        ;;
    start) start ;;
    stop | down) stop ;;
    tls-on) tls_on "${2:-}" "${3:-}" ;;
    tls-off) tls_off ;;
    *) die "usage: $0 up|down|start|stop|tls-on CERT KEY|tls-off" ;;
esac
