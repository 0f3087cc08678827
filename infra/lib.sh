# Shared helpers for the infra scripts: paths, logging, port probes, package installs.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${ORDERS_STATE_DIR:-$REPO_ROOT/.local}
mkdir -p "$STATE_DIR"

say() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# True when something accepts TCP connections on port $1 of $2 (default 127.0.0.1).
port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# wait_for_port PORT SECONDS WHAT [HOST]
wait_for_port() {
    local port=$1 seconds=$2 what=$3 host=${4:-127.0.0.1} i
    for ((i = 0; i < seconds * 10; i++)); do
        port_open "$port" "$host" && return 0
        sleep 0.1
    done
    die "$what did not open port $port within ${seconds}s"
}

# Install Debian packages that are missing; a second run installs nothing.
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run 'sudo apt-get install ${missing[*]}'"
    say "installing ${missing[*]}"
    # Waits for another apt (a second checkout's install, unattended upgrades) instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
}
