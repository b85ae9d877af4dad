#!/usr/bin/env bash
# The VM test lane: crius tested on nodes as users run them (systemd, cgroup v2
# with kubelet's systemd driver, AppArmor, kernels 6.1 and 5.10), each a
# Debian guest booted under qemu (node.sh).
#
#   e2e/node/lane.sh [--ci] [GUEST...]     GUESTs: debian12 kernel510 (default: both)
#
# On the host it builds crius and its test binaries, fills a registry storage
# with the test images (and, with CRITEST set, critest's stand-ins), then for
# each guest: builds it (cached), boots it, runs e2e/node/in-guest.sh there
# through ssh (the repository is the same path in the guest, over 9p), prints
# the guest's summary and powers it off. --ci runs the part `make test` runs
# (see in-guest.sh). With CRITEST=/path/to/critest (ginkgo beside it), critest
# runs in each guest too. Exits non-zero if any guest failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

mode=full
if [ "${1:-}" = --ci ]; then mode=ci; shift; fi
guests=("$@")
[ ${#guests[@]} -gt 0 ] || guests=(debian12 kernel510)

e2e/install-deps.sh
# Its own registry on a free port, whatever registry the caller runs.
unset CRIUS_E2E_REGISTRY CRIUS_E2E_IMAGES CRIUS_E2E_REGISTRY_STORAGE

work=$repo/target/node-lane
rm -rf "$work"
mkdir -p "$work"
booted=()
cleanup() {
    set +e
    for g in "${booted[@]}"; do [ -z "$g" ] || e2e/node/node.sh "$g" stop >/dev/null; done
    e2e/registry.sh stop "$work/registry"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== node lane: build"
cargo build --workspace --all-targets --quiet
# The test binaries, by target name, for in-guest.sh.
cargo test --workspace --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        t = m["target"]
        name = t["name"] if "lib" not in t["kind"] else "lib-" + t["name"]
        print(name, m["executable"])
' >"$work/test-binaries"

echo "== node lane: test images"
e2e/registry.sh start "$work/registry" >/dev/null
reg=$(cat "$work/registry/addr")
target/debug/crius-e2e push-images --registry "$reg" --out "$work/images.json" >/dev/null
if [ -n "${CRITEST:-}" ]; then
    # critest (and ginkgo beside it, for parallel specs) go where the guest
    # sees them: the repository's tree.
    mkdir -p "$work/critest"
    cp "$CRITEST" "$work/critest/critest"
    ginkgo=$(dirname "$(realpath "$CRITEST")")/ginkgo
    [ -x "$ginkgo" ] || ginkgo=$(command -v ginkgo || true)
    [ -z "$ginkgo" ] || cp "$ginkgo" "$work/critest/ginkgo"
    CRITEST=$work/critest/critest
    e2e/registry.sh start "$work/conformance-registry" >/dev/null
    e2e/conformance/images.sh "$(cat "$work/conformance-registry/addr")" "$work/conformance-images" >/dev/null
    e2e/registry.sh stop "$work/conformance-registry"
fi
e2e/registry.sh stop "$work/registry"

failed=()
for g in "${guests[@]}"; do
    echo "== node lane: $g"
    e2e/node/node.sh "$g" build
    e2e/node/node.sh "$g" boot
    booted+=("$g")
    status=0
    e2e/node/node.sh "$g" ssh "cd '$repo' && CRIUS_LANE_MODE=$mode CRIUS_LANE_GUEST=$g CRIUS_LANE_WORK='$work' \
        CRIUS_E2E_REGISTRY='$reg' CRITEST='${CRITEST:-}' e2e/node/in-guest.sh" || status=$?
    e2e/node/node.sh "$g" stop >/dev/null
    booted=("${booted[@]/$g/}")
    [ "$status" -eq 0 ] || failed+=("$g")
done
echo
for g in "${guests[@]}"; do cat "$work/summary-$g" 2>/dev/null || echo "node lane $g: no summary"; done
if [ ${#failed[@]} -gt 0 ]; then
    echo "node lane: FAILED on ${failed[*]}"
    exit 1
fi
echo "node lane: passed on ${guests[*]}"
