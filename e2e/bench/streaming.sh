#!/usr/bin/env bash
# Streaming benchmark: Exec round trip (`echo hi` over SPDY, from the Exec call
# to the exit status; median of RUNS, with where the time goes), ExecSync of
# `echo hi` (as exec probes call it; also in a container under RuntimeDefault
# seccomp, whose filter each exec must load), port-forward throughput over one
# connection (a 256 MiB file from busybox httpd in the pod), and the daemon's
# RSS growth while 20 execs stream 50 MiB each — crius and Debian's containerd,
# driven by the same client (crius-e2e bench-streams, SPDY as client-go).
#   e2e/bench/streaming.sh [RUNS]      (default 30)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-30}
bench_setup
"$BIN/crius-e2e" push-images --registry "$REG" --out "$WORK/images.json" >/dev/null
# containerd's pods need a network to start; crius's get a namespace of
# their own with loopback, which is all port-forward uses.
BRIDGES=(crbstr0)
mkdir -p "$WORK/containerd/net.d"
cni_bridge_config "$WORK/containerd/net.d/10-bench.conflist" crbstr0 10.203.0.0/24
start_crius
start_containerd
"$CTL" -r "$CONTAINERD" -t 1m pull "$REG/crius-test/pause:latest" >/dev/null
cat >"$WORK/pod.json" <<JSON
{"metadata": {"name": "streams", "namespace": "bench", "uid": "streams-uid", "attempt": 0},
 "log_directory": "$WORK/pod-logs",
 "linux": {"security_context": {"namespace_options": {"network": 0, "pid": 1, "ipc": 0}}}}
JSON
cat >"$WORK/web.json" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "$REG/crius-test/httpd:latest"}, "log_path": "web.log"}
JSON
cat >"$WORK/confined.json" <<JSON
{"metadata": {"name": "confined"}, "image": {"image": "$REG/crius-test/busybox:latest"},
 "command": ["sleep", "3600"], "log_path": "confined.log",
 "linux": {"security_context": {"seccomp": {"profile_type": 0}}}}
JSON

out=$WORK/figures
for target in "crius $CRIUS ${PIDS[0]}" "containerd $CONTAINERD ${PIDS[1]}"; do
    set -- $target
    "$CTL" -r "$2" -t 1m pull "$REG/crius-test/httpd:latest" >/dev/null
    "$CTL" -r "$2" -t 1m pull "$REG/crius-test/busybox:latest" >/dev/null
    pod=$("$CTL" -r "$2" -t 1m runp "$WORK/pod.json")
    cid=$("$CTL" -r "$2" -t 1m create "$pod" "$WORK/web.json" "$WORK/pod.json")
    "$CTL" -r "$2" start "$cid" >/dev/null
    confined=$("$CTL" -r "$2" -t 1m create "$pod" "$WORK/confined.json" "$WORK/pod.json")
    "$CTL" -r "$2" start "$confined" >/dev/null
    "$CTL" -r "$2" -t 1m exec -s "$cid" dd if=/dev/zero of=/var/www/big bs=1M count=256 2>/dev/null
    "$BIN/crius-e2e" bench-streams --endpoint "$2" --container "$cid" --pod "$pod" --confined "$confined" \
        --runs "$runs" --daemon-pid "$3" --label "$1" | tee -a "$out"
    "$CTL" -r "$2" -t 1m rmp -f "$pod" >/dev/null
done

get() { grep "^$1=" "$out" | cut -d= -f2; }
echo
echo "exec round trip, echo hi over SPDY (median of $runs, ms)"
printf '  %-11s %8s\n' crius "$(get crius.exec_round_trip_median_ms)" containerd "$(get containerd.exec_round_trip_median_ms)"
awk -v c="$(get crius.exec_round_trip_median_ms)" -v d="$(get containerd.exec_round_trip_median_ms)" \
    'BEGIN {printf "  crius/containerd = %.2f (target <= 0.50)\n", c / d}'
echo "  where it goes (medians, ms):"
printf '  %-11s %s\n' crius "$(get crius.exec_phases_median_ms)" containerd "$(get containerd.exec_phases_median_ms)"
echo "ExecSync echo hi, as exec probes call it (median of $runs, ms)"
printf '  %-11s %8s\n' crius "$(get crius.exec_sync_median_ms)" containerd "$(get containerd.exec_sync_median_ms)"
echo "ExecSync echo hi in a RuntimeDefault seccomp container (median of $runs, ms)"
printf '  %-11s %8s\n' crius "$(get crius.exec_sync_confined_median_ms)" containerd "$(get containerd.exec_sync_confined_median_ms)"
echo "port-forward throughput, one connection (MiB/s)"
printf '  %-11s %8s\n' crius "$(get crius.port_forward_mib_per_s)" containerd "$(get containerd.port_forward_mib_per_s)"
echo "daemon RSS growth while 20 execs stream 50 MiB each (MiB)"
printf '  %-11s %8s\n' crius "$(get crius.rss_growth_20_streams_mib)" containerd "$(get containerd.rss_growth_20_streams_mib)"
