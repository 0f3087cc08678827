#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft mode (one combined broker+controller) from its Maven Central jars.
# Jars, data and logs live under $STATE_DIR/kafka. Usage: kafka.sh up|down|jars (jars: only
# fetch them, for infra/kafka-cluster.sh)
source "$(dirname "$0")/lib.sh"

PORT=${KAFKA_LOCAL_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
HOME_DIR=$STATE_DIR/kafka
LIBS=$HOME_DIR/libs
DATA=$HOME_DIR/data
PIDFILE=$HOME_DIR/kafka.pid
CONFIG=$HOME_DIR/server.properties

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

fetch_jars() {
    local pom=$REPO_ROOT/infra/kafka/pom.xml stamp=$LIBS/.pom.sha
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha1sum "$pom")" ]; then return 0; fi
    command -v java >/dev/null || ensure_apt openjdk-17-jre-headless
    command -v mvn >/dev/null || ensure_apt maven
    say "fetching Kafka jars from Maven Central"
    rm -rf "$LIBS"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$LIBS" \
        || die "maven could not fetch the Kafka jars (see the output above)"
    sha1sum "$pom" >"$stamp"
}

write_config() {
    cat >"$CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:$CONTROLLER_PORT
listeners=PLAINTEXT://:$PORT,CONTROLLER://:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://localhost:$PORT,CONTROLLER://localhost:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
offsets.topic.num.partitions=4
PROPS
    cat "$REPO_ROOT/infra/kafka/single-node.properties" >>"$CONFIG"
}

format_storage() {
    [ -f "$DATA/meta.properties" ] && return 0
    local id
    id=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
    say "formatting KRaft storage (cluster id $id)"
    java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$id" -c "$CONFIG" --standalone >/dev/null
}

start() {
    if running; then say "already running on port $PORT (pid $(cat "$PIDFILE"))"; return 0; fi
    port_open "$PORT" && die "port $PORT is taken by another process; set KAFKA_LOCAL_PORT to a free port"
    port_open "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is taken; set KAFKA_CONTROLLER_PORT"
    mkdir -p "$DATA"
    fetch_jars
    write_config
    format_storage
    say "starting broker on port $PORT"
    KAFKA_LOG_DIR=$HOME_DIR nohup java -Xms256m -Xmx1G -XX:+UseG1GC \
        -Dlog4j2.configurationFile="$REPO_ROOT/infra/kafka/log4j2.yaml" -Dkafka.logs.dir="$HOME_DIR" \
        -cp "$LIBS/*" kafka.Kafka "$CONFIG" >"$HOME_DIR/broker.out" 2>&1 &
    echo $! >"$PIDFILE"
    wait_for_port "$PORT" 90 Kafka || { tail -n 30 "$HOME_DIR/broker.out" >&2; exit 1; }
    say "ready: localhost:$PORT"
}

stop() {
    running || { say "not running"; rm -f "$PIDFILE"; return 0; }
    local pid i
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$PIDFILE"
    say "stopped"
}

case "${1:-up}" in
    up | start) start ;;
    down | stop) stop ;;
    jars) fetch_jars ;;
    *) die "usage: $0 up|down|jars" ;;
esac
