#!/usr/bin/env bash
# Metrics benchmark: ListPodSandboxMetrics (what kubelet's /metrics/cadvisor
# costs with PodAndContainerStatsFromCRI) with PODS running pods of one
# container each, every pod on its own network (crius's built-in network;
# containerd with the CNI bridge plugin): median of CALLS calls with the same
# client (crius-e2e bench-metrics), and the daemon's CPU per call from
# /proc/PID/stat. Debian's containerd 1.6 answers Unimplemented for the
# metrics RPCs; then what kubelet calls on it instead is timed:
# ListPodSandboxStats followed by ListContainerStats.
#   e2e/bench/metrics.sh [PODS [CALLS]]      (default 100, 20)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
pods=${1:-100}
calls=${2:-20}
bench_setup
"$BIN/crius-e2e" push-images --registry "$REG" --out "$WORK/images.json" >/dev/null

BRIDGES=(crmet0 crmetc0)
mkdir -p "$WORK/crius" "$WORK/containerd/net.d"
cat >"$WORK/crius/config.toml" <<TOML
[network]
cni_conf_dir = "$WORK/crius/net.d"
[network.builtin]
bridge = "crmet0"
subnets = ["10.203.0.0/24"]
TOML
cni_bridge_config "$WORK/containerd/net.d/10-bench.conflist" crmetc0 10.204.0.0/24
start_crius crius "$WORK/crius/config.toml"
start_containerd
image=$REG/crius-test/busybox:latest
for endpoint in "$CRIUS" "$CONTAINERD"; do
    "$CTL" -r "$endpoint" -t 1m pull "$image" >/dev/null
done
"$CTL" -r "$CONTAINERD" -t 1m pull "$REG/crius-test/pause:latest" >/dev/null

out=$WORK/figures
bench() { # LABEL ENDPOINT DAEMON_PID
    "$BIN/crius-e2e" bench-metrics --label "$1" --endpoint "$2" --daemon-pid "$3" \
        --image "$image" --pods "$pods" --calls "$calls" --log-dir "$WORK/logs-$1"
}
bench crius "$CRIUS" "${PIDS[0]}" | tee "$out"
bench containerd "$CONTAINERD" "${PIDS[1]}" | tee -a "$out"
# The pods' parent cgroups, empty once the pods are gone.
for dir in /sys/fs/cgroup/crius-bench-metrics /sys/fs/cgroup/*/crius-bench-metrics; do
    [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

get() { grep "^$1=" "$out" | cut -d= -f2; }
echo
echo "scrape with $pods running pods (median of $calls calls, ms; daemon CPU per call, ms)"
for label in crius containerd; do
    printf '  %-11s %-40s %8s ms   CPU %6s ms\n' "$label" "$(get "$label.scrape_call")" \
        "$(get "$label.scrape_median_ms")" "$(get "$label.daemon_cpu_ms_per_scrape")"
done
echo "  crius: $(get crius.metrics_per_scrape) metrics of $(get crius.metrics_pods) pods per scrape"
if [ "$(get containerd.scrape_call)" != ListPodSandboxMetrics ]; then
    echo "  containerd answers Unimplemented for ListPodSandboxMetrics: compared with its stats calls"
fi
awk -v c="$(get crius.scrape_median_ms)" -v d="$(get containerd.scrape_median_ms)" \
    'BEGIN {printf "  crius/containerd = %.2f (target <= 0.50)\n", c / d}'
