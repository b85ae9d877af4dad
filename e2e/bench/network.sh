#!/usr/bin/env bash
# Network set-up benchmark: RunPodSandbox latency (median of RUNS) with the
# pod's own network minus that with the node's network is the network set-up
# share of pod start (CNI ADD, or crius's built-in network). Measured for
# crius's built-in network, crius with the CNI bridge plugin, and Debian's
# containerd with the same CNI config; all driven by the same client
# (crius-e2e bench-sandboxes).
#   e2e/bench/network.sh [RUNS]      (default 30)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-30}
bench_setup
"$BIN/crius-e2e" push-images --registry "$REG" --out "$WORK/images.json" >/dev/null

BRIDGES=(crbench0 crbcni0 crbctd0)
mkdir -p "$WORK/builtin" "$WORK/cni/net.d" "$WORK/containerd/net.d"
cat >"$WORK/builtin/config.toml" <<TOML
[network]
cni_conf_dir = "$WORK/builtin/net.d"
[network.builtin]
bridge = "crbench0"
subnets = ["10.200.0.0/24"]
TOML
cat >"$WORK/cni/config.toml" <<TOML
[network]
cni_conf_dir = "$WORK/cni/net.d"
TOML
cni_bridge_config "$WORK/cni/net.d/10-bench.conflist" crbcni0 10.201.0.0/24
cni_bridge_config "$WORK/containerd/net.d/10-bench.conflist" crbctd0 10.202.0.0/24

start_crius builtin "$WORK/builtin/config.toml"
BUILTIN=$CRIUS
start_crius cni "$WORK/cni/config.toml"
CNI=$CRIUS
start_containerd
"$CTL" -r "$CONTAINERD" -t 1m pull "$REG/crius-test/pause:latest" >/dev/null

out=$WORK/figures
for target in "crius_builtin $BUILTIN" "crius_cni $CNI" "containerd_cni $CONTAINERD"; do
    set -- $target
    # One warm-up pod each: the bridge and rules are made on first use.
    "$BIN/crius-e2e" bench-sandboxes --endpoint "$2" --runs 1 --pod-network --label warm >/dev/null
    "$BIN/crius-e2e" bench-sandboxes --endpoint "$2" --runs "$runs" --label "$1" | tee -a "$out"
    "$BIN/crius-e2e" bench-sandboxes --endpoint "$2" --runs "$runs" --pod-network --label "$1" | tee -a "$out"
done

get() { grep "^$1=" "$out" | cut -d= -f2; }
echo
echo "RunPodSandbox, median of $runs (ms): node network, pod network, network set-up = difference"
for label in crius_builtin crius_cni containerd_cni; do
    awk -v l="$label" -v n="$(get "$label.runp_node_median_ms")" -v p="$(get "$label.runp_pod_median_ms")" \
        'BEGIN {printf "  %-15s node %7.1f   pod %7.1f   set-up %7.1f\n", l, n, p, p - n}'
done
awk -v bn="$(get crius_builtin.runp_node_median_ms)" -v bp="$(get crius_builtin.runp_pod_median_ms)" \
    -v cn="$(get crius_cni.runp_node_median_ms)" -v cp="$(get crius_cni.runp_pod_median_ms)" \
    -v dn="$(get containerd_cni.runp_node_median_ms)" -v dp="$(get containerd_cni.runp_pod_median_ms)" \
    'BEGIN {printf "  built-in set-up / CNI bridge set-up (crius) = %.2f (target <= 0.50)\n", (bp - bn) / (cp - cn);
            printf "  crius built-in pod / containerd CNI pod     = %.2f\n", bp / dp}'
