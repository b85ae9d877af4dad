#!/usr/bin/env bash
# Pull benchmark: a two-layer image of about 130 MB compressed and 370 MB
# unpacked (text-like data, gzip), pulled cold from the local registry by crius
# and by Debian's containerd (CRI plugin), both driven by criusctl: one pull at
# a time, then 8 concurrent pulls of it (as kubelet starting 8 pods of one
# image). Beside them, the machine's own limit for those bytes: both layer
# blobs hashed (sha256), gunzipped and written out by `tar`, in parallel.
#   e2e/bench/pull.sh [RUNS]      (default 5 runs each; medians reported)
cd "$(dirname "$0")/../.."
. e2e/bench/lib.sh
runs=${1:-5}
bench_setup
image=$REG/crius-test/big:latest
"$BIN/crius-e2e" push-big --registry "$REG" --no-base --layers 2 --layer-mb 177
start_crius
start_containerd

cold() { # ENDPOINT: the image removed and its removal settled on disk
    "$CTL" -r "$1" -t 10m rmi "$image" >/dev/null 2>&1 || true
    sync
}

pull_ms() { # ENDPOINT
    cold "$1"
    local start end
    start=$(now_ms)
    "$CTL" -r "$1" -t 10m pull "$image" >/dev/null
    end=$(now_ms)
    echo $((end - start))
}

pull8_ms() { # ENDPOINT: wall time of 8 concurrent pulls, all of which must succeed
    cold "$1"
    local start end pids=() pid
    start=$(now_ms)
    for _ in 1 2 3 4 5 6 7 8; do
        "$CTL" -r "$1" -t 10m pull "$image" >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    end=$(now_ms)
    echo $((end - start))
}

# Interleaved, so a load that drifts during the run weighs on every figure
# alike.
crius_ms=() containerd_ms=() crius8_ms=() containerd8_ms=()
for _ in $(seq 1 "$runs"); do
    crius_ms+=("$(pull_ms "$CRIUS")")
    containerd_ms+=("$(pull_ms "$CONTAINERD")")
    crius8_ms+=("$(pull8_ms "$CRIUS")")
    containerd8_ms+=("$(pull8_ms "$CONTAINERD")")
    echo "one pull: crius ${crius_ms[-1]} ms, containerd ${containerd_ms[-1]} ms;" \
        "8 at once: crius ${crius8_ms[-1]} ms, containerd ${containerd8_ms[-1]} ms"
done

# The machine's limit on the same layer blobs, taken from crius's store (the
# image's two largest blobs): each hashed while `tar -xzf` unpacks it, the two
# at once, as crius unpacks layers.
mapfile -t blobs < <(ls -S "$WORK/crius/root/content/blobs/sha256/"* | head -2)
compressed=$(cat "${blobs[@]}" | wc -c)
limit_ms=()
for _ in $(seq 1 "$runs"); do
    rm -rf "$WORK/limit" && mkdir "$WORK/limit" && sync
    start=$(now_ms)
    jobs=()
    for i in "${!blobs[@]}"; do
        mkdir "$WORK/limit/$i"
        (tee >(sha256sum >/dev/null) <"${blobs[$i]}" | tar -xzf - -C "$WORK/limit/$i") &
        jobs+=($!)
    done
    for pid in "${jobs[@]}"; do wait "$pid"; done
    end=$(now_ms)
    limit_ms+=("$((end - start))")
done
unpacked=$(du -sb "$WORK/limit" | cut -f1)
rm -rf "$WORK/limit"

c=$(median "${crius_ms[@]}") d=$(median "${containerd_ms[@]}")
c8=$(median "${crius8_ms[@]}") d8=$(median "${containerd8_ms[@]}")
l=$(median "${limit_ms[@]}")
echo
echo "cold pull of $image: 2 layers, $((compressed / 1000000)) MB compressed, $((unpacked / 1000000)) MB unpacked ($runs runs each, ms)"
printf '  %-26s %8s   runs: %s\n' "crius, one pull" "$c" "${crius_ms[*]}" \
    "containerd, one pull" "$d" "${containerd_ms[*]}" \
    "crius, 8 at once" "$c8" "${crius8_ms[*]}" \
    "containerd, 8 at once" "$d8" "${containerd8_ms[*]}" \
    "machine limit (sha256+tar)" "$l" "${limit_ms[*]}"
awk -v c="$c" -v d="$d" -v c8="$c8" -v d8="$d8" -v l="$l" 'BEGIN {
    printf "  crius/containerd, one pull   = %.2f (target <= 0.50)\n", c / d
    printf "  crius/machine limit          = %.2f (target <= 2.00)\n", c / l
    printf "  crius, 8 at once / one pull  = %.2f (target <= 1.20)\n", c8 / c
    printf "  containerd, 8 at once / one  = %.2f\n", d8 / d
}'
