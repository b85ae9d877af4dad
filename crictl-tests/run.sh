#!/usr/bin/env bash
# Runs every crictl-tests/scenarios/*.sh against a fresh criusd of its own.
# The scenarios drive the runtime through $CRICTL: criusctl by default, or the
# real crictl when CRICTL is set (e.g. CRICTL=/usr/local/bin/crictl).
# Binaries come from $CRIUS_BIN (default target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${CRIUS_BIN:-target/debug}")
work=$(mktemp -d /tmp/crius-crictl.XXXXXX)

# The built-in network on a bridge of its own, removed afterwards.
bridge=crctl$$
bridge=${bridge:0:15}
cat >"$work/config.toml" <<TOML
[network]
cni_conf_dir = "$work/net.d"
[network.builtin]
bridge = "$bridge"
subnets = ["10.197.0.0/24"]
TOML
"$bin/criusd" --config "$work/config.toml" --listen "$work/crius.sock" --root "$work/root" \
    --state "$work/state" --log-level "info,crius=debug" >"$work/criusd.log" 2>&1 </dev/null &
daemon=$!
# Under systemd the scenarios' pods live in kubelet-style slices, which are
# kubelet's to remove: the run stops the kubepods slice if it made it.
kubepods_before=$(systemctl is-active kubepods.slice 2>/dev/null || true)
cleanup() {
    # Pods a failed scenario left go first: their containers outlive criusd.
    "$bin/criusctl" -r "unix://$work/crius.sock" rmp -f -a >/dev/null 2>&1 || true
    kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$bin/crius-e2e" remove-bridge "$bridge" 2>/dev/null || true
    if [ -d /run/systemd/system ] && [ "$kubepods_before" != active ]; then
        systemctl stop kubepods.slice 2>/dev/null || true
    fi
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# CRIUS_TEST_SLOWDOWN (the VM lane's factor for guests under emulation)
# stretches every wait.
slowdown=${CRIUS_TEST_SLOWDOWN:-1}
for _ in $(seq 1 $((100 * slowdown))); do [ -S "$work/crius.sock" ] && break; sleep 0.1; done
[ -S "$work/crius.sock" ] || { cat "$work/criusd.log"; echo "criusd did not start" >&2; exit 1; }

export CRI_ENDPOINT="unix://$work/crius.sock"
export CRICTL=${CRICTL:-$bin/criusctl}
export CRICTL_TESTS=$PWD/crictl-tests CRICTL_TMP=$work

passed=0 failed=0
for scenario in crictl-tests/scenarios/*.sh; do
    # CRICTL_SCENARIOS="01 04": only the scenarios whose names start so.
    if [ -n "${CRICTL_SCENARIOS:-}" ] && ! grep -qw "$(basename "$scenario" | cut -c1-2)" <<<"$CRICTL_SCENARIOS"; then
        continue
    fi
    if bash "$scenario" >"$work/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $(basename "$scenario")"
    else
        failed=$((failed + 1))
        echo "FAIL $(basename "$scenario")"
        sed 's/^/     /' "$work/out"
    fi
done
if [ "$failed" -gt 0 ]; then
    echo "--- criusd log"
    tail -50 "$work/criusd.log"
fi
echo "crictl-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
