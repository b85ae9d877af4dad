#!/usr/bin/env bash
# NRI benchmark: what one plugin that subscribes to every event and adjusts
# nothing costs a pod start (RunPodSandbox + CreateContainer +
# StartContainer, busybox present; medians of RUNS each way, in alternating
# blocks without and with the plugin), on one criusd with NRI on. The same
# client drives both sides (crius-e2e bench-nri, with the tests' plugin).
# containerd 1.6 has no NRI of this version, so there is no peer column.
#   e2e/bench/nri.sh [RUNS]      (default 60)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-60}
bench_setup
"$BIN/crius-e2e" push-images --registry "$REG" --out "$WORK/images.json" >/dev/null
mkdir -p "$WORK/nri/plugins" "$WORK/nri/conf"
cat >"$WORK/nri.toml" <<TOML
[network.builtin]
enabled = false
[nri]
enable = true
socket_path = "$WORK/nri/nri.sock"
plugin_path = "$WORK/nri/plugins"
plugin_config_path = "$WORK/nri/conf"
TOML
start_crius crius "$WORK/nri.toml"
image=$REG/crius-test/busybox:latest
"$CTL" -r "$CRIUS" -t 1m pull "$image" >/dev/null
out=$WORK/figures
"$BIN/crius-e2e" bench-nri --endpoint "$CRIUS" --socket "$WORK/nri/nri.sock" --image "$image" \
    --runs "$runs" --log-dir "$WORK/logs-nri" | tee "$out"
get() { grep "^$1=" "$out" | cut -d= -f2; }
echo
echo "pod start with one NRI plugin subscribed to every event (median of $runs each, ms)"
printf '  %-16s %8s\n' "without plugin" "$(get nri.pod_start_without_plugin_median_ms)" \
    "with plugin" "$(get nri.pod_start_with_plugin_median_ms)"
printf '  %-16s %8s   (target <= 2)\n' "cost" "$(get nri.plugin_cost_ms)"
echo "  where it goes (median with minus median without, ms): RunPodSandbox $(get nri.run_pod_sandbox_cost_ms)," \
    "CreateContainer $(get nri.create_container_cost_ms), StartContainer $(get nri.start_container_cost_ms)"
