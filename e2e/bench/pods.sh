#!/usr/bin/env bash
# Pod benchmark: start latency of a pod with one container (RunPodSandbox +
# CreateContainer + StartContainer, image present; median of RUNS), 50 pods
# started concurrently, the memory a running pod costs (shims, pause), the
# daemon's RSS with 50 pods, and stats polling (ListContainerStats,
# ListPodSandboxStats) with them — crius and Debian's containerd (CRI plugin,
# runc), driven by the same client (crius-e2e bench-pods). Pods use the node's
# network so that the figures compare the runtimes, not their CNI set-up.
#   e2e/bench/pods.sh [RUNS]      (default 30)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-30}
bench_setup
"$BIN/crius-e2e" push-images --registry "$REG" --out "$WORK/images.json" >/dev/null
start_crius
start_containerd
image=$REG/crius-test/busybox:latest
for endpoint in "$CRIUS" "$CONTAINERD"; do
    "$CTL" -r "$endpoint" -t 1m pull "$image" >/dev/null
done
# containerd's sandboxes need its pause image.
"$CTL" -r "$CONTAINERD" -t 1m pull "$REG/crius-test/pause:latest" >/dev/null

bench() { # LABEL ENDPOINT DAEMON_PID SHIM
    "$BIN/crius-e2e" bench-pods --label "$1" --endpoint "$2" --daemon-pid "$3" --shim "$4" \
        --image "$image" --runs "$runs" --concurrent 50 --log-dir "$WORK/logs-$1"
}
out=$WORK/figures
bench crius "$CRIUS" "${PIDS[0]}" crius-shim | tee "$out"
bench containerd "$CONTAINERD" "${PIDS[1]}" containerd-shim-runc-v2 | tee -a "$out"

get() { grep "^$1=" "$out" | cut -d= -f2; }
echo
echo "pod start (RunPodSandbox+CreateContainer+StartContainer, busybox present; median of $runs, ms)"
printf '  %-11s %8s\n' crius "$(get crius.pod_start_median_ms)" containerd "$(get containerd.pod_start_median_ms)"
awk -v c="$(get crius.pod_start_median_ms)" -v d="$(get containerd.pod_start_median_ms)" \
    'BEGIN {printf "  crius/containerd = %.2f (target <= 0.60)\n", c / d}'
echo "50 pods started concurrently (total ms)"
printf '  %-11s %8s\n' crius "$(get crius.concurrent_50_total_ms)" containerd "$(get containerd.concurrent_50_total_ms)"
awk -v c="$(get crius.concurrent_50_total_ms)" -v d="$(get containerd.concurrent_50_total_ms)" \
    'BEGIN {printf "  crius/containerd = %.2f (target <= 0.60)\n", c / d}'
echo "memory per running pod with one container: its shim(s) and pause (MiB; RSS counts shared pages in full, PSS shares them out)"
printf '  %-11s RSS %6s  PSS %6s   (target: crius RSS <= 2)\n' \
    crius "$(get crius.per_pod_rss_mib)" "$(get crius.per_pod_pss_mib)" \
    containerd "$(get containerd.per_pod_rss_mib)" "$(get containerd.per_pod_pss_mib)"
echo "daemon RSS with 50 running pods (MiB)"
printf '  %-11s %8s   (target: crius <= 40)\n' crius "$(get crius.daemon_rss_mib_with_50_pods)" \
    containerd "$(get containerd.daemon_rss_mib_with_50_pods)"
echo "stats polling with 50 running pods (median of 10 calls, ms)"
printf '  %-11s ListContainerStats %6s   ListPodSandboxStats %6s\n' \
    crius "$(get crius.list_container_stats_50_pods_median_ms)" "$(get crius.list_pod_sandbox_stats_50_pods_median_ms)" \
    containerd "$(get containerd.list_container_stats_50_pods_median_ms)" "$(get containerd.list_pod_sandbox_stats_50_pods_median_ms)"
