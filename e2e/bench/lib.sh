# Shared set-up for benchmarks: a registry, criusd and Debian's containerd (with
# its CRI plugin), each with temporary state, all stopped by PID on exit.
# Source it from a benchmark script after `cd` to the repository root.
set -euo pipefail

bench_setup() {
    e2e/install-deps.sh
    if ! command -v containerd >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null
    fi
    cargo build --release --quiet --workspace
    BIN=$PWD/target/release
    CTL=$BIN/criusctl
    WORK=$(mktemp -d /tmp/crius-bench.XXXXXX)
    PIDS=()
    BRIDGES=() # removed on exit
    trap bench_cleanup EXIT
    e2e/registry.sh start "$WORK/registry" >/dev/null
    REG=$(cat "$WORK/registry/addr")
}

bench_cleanup() {
    # Pods a failed run left are removed through their runtime while it still
    # runs: containerd's pause processes, namespaces and CNI rules would
    # otherwise outlive it.
    for endpoint in ${CRIUS:-} ${CONTAINERD:-}; do
        timeout 300 "$CTL" -r "$endpoint" -t 1m rmp -f --all >/dev/null 2>&1 || true
    done
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    e2e/registry.sh stop "$WORK/registry" || true
    for bridge in "${BRIDGES[@]}"; do
        "$BIN/crius-e2e" remove-bridge "$bridge" 2>/dev/null || true
    done
    # containerd's and crius's stores may hold overlay mounts of running pods.
    grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}

wait_socket() {
    for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
    echo "no socket $1" >&2
    return 1
}

# start_crius [NAME [CONFIG]]: a criusd in $WORK/NAME (default "crius"), with
# CONFIG (default: the built-in defaults with the built-in network off, for
# host-network pods); sets CRIUS to its endpoint.
start_crius() {
    local dir=$WORK/${1:-crius} config=${2:-}
    mkdir -p "$dir"
    if [ -z "$config" ]; then
        config=$dir/config.toml
        printf '[network.builtin]\nenabled = false\n' >"$config"
    fi
    # setsid: a Ctrl-C reaches the script, whose cleanup still needs the
    # daemons to remove their pods, not the daemons themselves.
    setsid "$BIN/criusd" --config "$config" --listen "$dir/crius.sock" --root "$dir/root" \
        --state "$dir/state" --log-level warn >"$dir/log" 2>&1 </dev/null &
    PIDS+=($!)
    CRIUS=unix://$dir/crius.sock
    wait_socket "$dir/crius.sock"
}

# cni_bridge_config FILE BRIDGE SUBNET: the CNI network both runtimes get in
# the network benchmark (manifests/cni's shape: bridge, host-local, portmap).
cni_bridge_config() {
    cat >"$1" <<JSON
{"cniVersion": "1.0.0", "name": "bench-$2", "plugins": [
  {"type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$WORK/ipam-$2",
            "ranges": [[{"subnet": "$3"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
}

start_containerd() {
    local dir=$WORK/containerd
    mkdir -p "$dir/certs.d/$REG" "$dir/net.d"
    cat >"$dir/certs.d/$REG/hosts.toml" <<TOML
server = "http://$REG"
[host."http://$REG"]
  capabilities = ["pull", "resolve"]
TOML
    cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "$REG/crius-test/pause:latest"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/net.d"
TOML
    setsid containerd --config "$dir/config.toml" >"$dir/log" 2>&1 </dev/null &
    PIDS+=($!)
    CONTAINERD=unix://$dir/containerd.sock
    wait_socket "$dir/containerd.sock"
}

# now_ms: milliseconds since the epoch.
now_ms() {
    date +%s%3N
}

# median N...: the median of its arguments.
median() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
