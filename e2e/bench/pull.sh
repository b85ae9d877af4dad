#!/usr/bin/env bash
# Pull benchmark: cold pull+unpack of a large multi-layer image from the local
# registry by crius and by containerd (Debian's, CRI plugin), both driven by
# criusctl; then unpack throughput of one gzip layer, crius's unpacker against
# `tar -xzf` on the same blob. Prints the figures side by side.
#   e2e/bench/pull.sh [RUNS]      (default 5 runs each; medians reported)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-5}
bench_setup
image=$REG/crius-test/big:latest
"$BIN/crius-e2e" push-big --registry "$REG"
start_crius
start_containerd

pull_ms() { # ENDPOINT
    "$CTL" -r "$1" -t 10m rmi "$image" >/dev/null 2>&1 || true
    sync
    local start end
    start=$(now_ms)
    "$CTL" -r "$1" -t 10m pull "$image" >/dev/null
    end=$(now_ms)
    echo $((end - start))
}

crius_ms=() containerd_ms=()
for _ in $(seq 1 "$runs"); do
    crius_ms+=("$(pull_ms "$CRIUS")")
    containerd_ms+=("$(pull_ms "$CONTAINERD")")
done
c=$(median "${crius_ms[@]}")
d=$(median "${containerd_ms[@]}")
echo
echo "cold pull+unpack of $image ($runs runs each, ms)"
printf '  %-11s %8s   runs: %s\n' crius "$c" "${crius_ms[*]}" containerd "$d" "${containerd_ms[*]}"
awk -v c="$c" -v d="$d" 'BEGIN {printf "  crius/containerd = %.2f (target <= 0.70)\n", c / d}'

# Unpack throughput on the largest gzip layer crius stored.
blob=$(ls -S "$WORK/crius/root/content/blobs/sha256/"* | head -1)
size=$(stat -c %s "$blob")
tar_s=() crius_s=()
for _ in $(seq 1 "$runs"); do
    rm -rf "$WORK/untar" && mkdir "$WORK/untar" && sync
    start=$(now_ms); tar -xzf "$blob" -C "$WORK/untar"; end=$(now_ms)
    tar_s+=("$((end - start))")
    rm -rf "$WORK/unpack" && sync
    start=$(now_ms); "$BIN/crius-e2e" unpack --blob "$blob" --dest "$WORK/unpack" >/dev/null; end=$(now_ms)
    crius_s+=("$((end - start))")
done
unpacked=$(du -sb "$WORK/unpack" | cut -f1)
t=$(median "${tar_s[@]}")
u=$(median "${crius_s[@]}")
echo
echo "unpack of one gzip layer ($((size >> 20)) MiB compressed, $((unpacked >> 20)) MiB unpacked; ms)"
printf '  %-11s %8s   runs: %s\n' "tar -xzf" "$t" "${tar_s[*]}" "crius" "$u" "${crius_s[*]}"
awk -v t="$t" -v u="$u" -v b="$unpacked" 'BEGIN {printf "  throughput: tar %.0f MB/s, crius %.0f MB/s = %.0f%% of tar (target >= 80%%)\n", b / t / 1000, b / u / 1000, 100 * t / u}'
