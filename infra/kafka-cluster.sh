#!/usr/bin/env bash
# Three Apache Kafka 4.x KRaft nodes, each a combined broker+controller and one of three
# voters, from the jars infra/kafka.sh fetches, for the tests of a replicated cluster. Node N
# (1-3) listens on $KAFKA_CLUSTER_HOST:$((KAFKA_CLUSTER_BASE_PORT + N)) for clients and
# on +10+N for the controller quorum; its data, log and pid file are under
# $STATE_DIR/kafka-cluster/nodeN, its heap is 384 MB.
# On a private network (the network-fault tests, tests/netns.py): KAFKA_CLUSTER_HOSTS lists the
# three nodes' addresses, and KAFKA_CLUSTER_NETNS the network namespaces they run in.
# Usage: kafka-cluster.sh up|down|wipe|status|brokers, or start|stop|kill N (stop: SIGTERM and
# wait, kill: SIGKILL; both leave the node down until `start N` or `up`; wipe: down, then the
# nodes' data deleted).
source "$(dirname "$0")/lib.sh"

BASE=${KAFKA_CLUSTER_BASE_PORT:-9400}
HOST=${KAFKA_CLUSTER_HOST:-127.0.0.1}
HOME_DIR=$STATE_DIR/kafka-cluster
LIBS=$STATE_DIR/kafka/libs
NODES=(1 2 3)
IFS=, read -r -a HOSTS <<<"${KAFKA_CLUSTER_HOSTS:-$HOST,$HOST,$HOST}"
IFS=, read -r -a NETNS <<<"${KAFKA_CLUSTER_NETNS:-}"

host() { echo "${HOSTS[$1 - 1]}"; }
# The command prefix that runs node N where it belongs.
where() { [ ${#NETNS[@]} -eq 0 ] || echo "ip netns exec ${NETNS[$1 - 1]}"; }
port() { echo $((BASE + $1)); }
controller_port() { echo $((BASE + 10 + $1)); }
pidfile() { echo "$HOME_DIR/node$1/kafka.pid"; }
running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }
brokers() {
    local n list=()
    for n in "${NODES[@]}"; do list+=("$(host "$n"):$(port "$n")"); done
    (IFS=,; echo "${list[*]}")
}
node_id() {
    case "${1:-}" in 1 | 2 | 3) ;; *) die "node id must be 1, 2 or 3, not '${1:-}'" ;; esac
}

write_config() {
    local n=$1 dir=$HOME_DIR/node$1 voters=() v
    for v in "${NODES[@]}"; do voters+=("$v@$(host "$v"):$(controller_port "$v")"); done
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://$(host "$n"):$(port "$n"),CONTROLLER://$(host "$n"):$(controller_port "$n")
advertised.listeners=PLAINTEXT://$(host "$n"):$(port "$n"),CONTROLLER://$(host "$n"):$(controller_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.num.partitions=4
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# A lost broker is fenced (its leaderships and ISR places given up) this long after its last
# heartbeat: until then no acks=all write to a partition it replicates is acknowledged, so it
# bounds every pause a broker loss causes (docs/deploying.md). Kafka's defaults: 9 s and 2 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
auto.create.topics.enable=false
PROPS
}

format_storage() {
    local n
    for n in "${NODES[@]}"; do [ -f "$HOME_DIR/node$n/data/meta.properties" ] && return 0; done
    local id
    id=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
    say "formatting KRaft storage of three nodes (cluster id $id)"
    for n in "${NODES[@]}"; do
        java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$id" \
            -c "$HOME_DIR/node$n/server.properties" >/dev/null
    done
}

start_node() {
    local n=$1 dir=$HOME_DIR/node$1
    if running "$n"; then return 0; fi
    port_open "$(port "$n")" "$(host "$n")" \
        && die "port $(port "$n") of $(host "$n") is taken; set KAFKA_CLUSTER_BASE_PORT"
    say "starting node $n on $(host "$n"):$(port "$n")"
    # shellcheck disable=SC2046 # where: a command prefix, split on purpose
    KAFKA_LOG_DIR=$dir nohup $(where "$n") java -Xms128m -Xmx384m -XX:+UseG1GC \
        -Dlog4j2.configurationFile="$REPO_ROOT/infra/kafka/log4j2.yaml" -Dkafka.logs.dir="$dir" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/broker.out" 2>&1 &
    echo $! >"$(pidfile "$n")"
}

wait_node() {
    local n=$1
    wait_for_port "$(port "$n")" 120 "Kafka node $n" "$(host "$n")" \
        || { tail -n 30 "$HOME_DIR/node$n/broker.out" >&2; exit 1; }
}

up() {
    "$REPO_ROOT/infra/kafka.sh" jars
    local n
    for n in "${NODES[@]}"; do mkdir -p "$HOME_DIR/node$n/data"; write_config "$n"; done
    format_storage
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_node "$n"; done
    say "ready: $(brokers)"
}

stop_node() {
    local n=$1 signal=$2 pid i
    running "$n" || { rm -f "$(pidfile "$n")"; return 0; }
    pid=$(cat "$(pidfile "$n")")
    kill "-$signal" "$pid"
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$(pidfile "$n")"
    say "node $n stopped (SIG$signal)"
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if running "$n"; then echo "node $n up pid $(cat "$(pidfile "$n")") $(host "$n"):$(port "$n")"
        else echo "node $n down"; fi
    done
}

case "${1:-up}" in
    up) up ;;
    down) for n in "${NODES[@]}"; do stop_node "$n" TERM; done ;;
    wipe) for n in "${NODES[@]}"; do stop_node "$n" TERM; done; rm -rf "$HOME_DIR" ;;
    status) status ;;
    brokers) brokers ;;
    start) node_id "${2:-}"; start_node "$2"; wait_node "$2" ;;
    stop) node_id "${2:-}"; stop_node "$2" TERM ;;
    kill) node_id "${2:-}"; stop_node "$2" KILL ;;
    *) die "usage: $0 up|down|wipe|status|brokers, or start|stop|kill 1|2|3" ;;
esac
