#!/usr/bin/env bash
# Starts or stops the harness's registry: Debian's docker-registry
# (distribution v2) on loopback, storage in DIR. The address is
# $CRIUS_E2E_REGISTRY if set, else a free port on 127.0.0.1 (a developer may
# already run a registry on 5000); it is written to DIR/addr.
#   e2e/registry.sh start DIR [STORAGE]  # returns once /v2/ answers; STORAGE
#                                         # serves images pushed elsewhere
#   e2e/registry.sh stop DIR     # stops it by the PID recorded in DIR
set -euo pipefail

# A port the kernel hands out as free; docker-registry takes it a moment later.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

addr=${CRIUS_E2E_REGISTRY:-127.0.0.1:$(free_port)}
cmd=${1:?usage: registry.sh start|stop DIR}
dir=${2:?usage: registry.sh start|stop DIR}
pidfile=$dir/registry.pid

storage=${3:-$dir/storage}

case $cmd in
start)
    mkdir -p "$dir" "$storage"
    if curl -fsS -o /dev/null "http://$addr/v2/" 2>/dev/null; then
        echo "registry.sh: something already serves http://$addr; stop it first" >&2
        exit 1
    fi
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: $addr
  debug:
    addr: ""
YAML
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$addr" >"$dir/addr"
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://$addr/v2/" 2>/dev/null; then
            echo "registry serving http://$addr (pid $(cat "$pidfile"), storage $storage)"
            exit 0
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "registry.sh: docker-registry exited; log:" >&2
            cat "$dir/registry.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "registry.sh: registry did not answer on $addr" >&2
    kill "$(cat "$pidfile")" 2>/dev/null || true
    exit 1
    ;;
stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    ;;
*)
    echo "usage: registry.sh start|stop DIR" >&2
    exit 2
    ;;
esac
