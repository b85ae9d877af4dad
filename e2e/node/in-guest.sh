#!/usr/bin/env bash
# Runs inside a VM lane guest (lane.sh starts it through ssh, from the
# repository, which the guest mounts at the host's path): prints the node's
# facts, serves the test images from the storage the host filled, and runs
# the tests that depend on what the node is (init, cgroups, LSM, kernel).
# Writes $CRIUS_LANE_WORK/summary-$CRIUS_LANE_GUEST and exits non-zero if a
# step failed.
set -uo pipefail
work=${CRIUS_LANE_WORK:?}
guest=${CRIUS_LANE_GUEST:?}
mode=${CRIUS_LANE_MODE:-full}
logs=$work/$guest
mkdir -p "$logs"
bin=$PWD/target/debug

kernel=$(uname -r)
init=$(ps -p 1 -o comm=)
cgroup=$(stat -fc %T /sys/fs/cgroup)
apparmor=$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo N)
echo "node: kernel $kernel, init $init ($(systemctl --version | head -1)), cgroup fs $cgroup" \
    "($(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)), AppArmor $apparmor," \
    "$(runc --version | head -1), $(crun --version | head -1), $(criu --version 2>/dev/null | head -1)"

# The host's registry storage, served on the port the image references name.
reg_dir=$(mktemp -d /tmp/crius-lane-registry.XXXXXX)
CRIUS_E2E_REGISTRY=$CRIUS_E2E_REGISTRY e2e/registry.sh start "$reg_dir" "$work/registry/storage" >/dev/null ||
    { echo "in-guest: the registry did not start"; exit 1; }
trap 'e2e/registry.sh stop "$reg_dir"; rm -rf "$reg_dir"' EXIT
export CRIUS_E2E_REGISTRY CRIUS_E2E_IMAGES=$work/images.json CRIUS_E2E_REGISTRY_STORAGE=$work/registry/storage
# Under emulation (TCG) a guest is about ten times slower than the host:
# the tests' waits scale by this factor (tests/common: patience).
export CRIUS_TEST_SLOWDOWN=${CRIUS_TEST_SLOWDOWN:-8}

results=()
failures=0
# step NAME COMMAND...: runs it with its output in $logs/NAME.log.
step() {
    local name=$1 t0=$SECONDS status=0
    shift
    "$@" >"$logs/$name.log" 2>&1 </dev/null || status=$?
    local line
    if [ "$status" -eq 0 ]; then
        line="ok   $name ($((SECONDS - t0)) s)"
    else
        line="FAIL $name ($((SECONDS - t0)) s, exit $status; log $logs/$name.log)"
        failures=$((failures + 1))
    fi
    echo "$line"
    [ "$status" -eq 0 ] || tail -n 40 "$logs/$name.log" | sed 's/^/     /'
    results+=("$line")
}

# test_binary TARGET [FILTER...]: the integration or unit test binary built on
# the host for TARGET (lib-crius for the library's unit tests).
test_binary() {
    local target=$1 path
    shift
    path=$(awk -v t="$target" '$1 == t { print $2; exit }' "$work/test-binaries")
    [ -n "$path" ] || { echo "no test binary for $target"; return 1; }
    "$path" --include-ignored --test-threads=2 "$@"
}

# What depends on the node: cgroup paths and files, OOM, hugepages, AppArmor,
# overlay mounts, exec's entry into a container, checkpoints (criu works in
# the guests, not on every host). `make test` (--ci) runs the
# tests of these that a guest under emulation gets through in a few minutes;
# `make test-node` runs the whole files and more.
step unit test_binary lib-crius cgroups:: image::overlay stats:: container::apparmor container::enter
if [ "$mode" = ci ]; then
    step containers test_binary containers memory_limit_oom_and_resource_updates \
        seccomp_runtime_default_blocks_unshare users_capabilities_and_read_only_rootfs
    step kubelet_requests test_binary kubelet_requests
    step stats test_binary stats
    step exec_entry test_binary exec_entry entered_processes_are_what_runc_exec_makes
    step checkpoint test_binary checkpoint
    step crictl env CRIUS_BIN="$bin" CRICTL_SCENARIOS="01 03 04 06 09" crictl-tests/run.sh
else
    for t in containers kubelet_requests stats exec_entry capabilities sandboxes metrics \
        streaming image_layers image_volumes rootfs events checkpoint; do
        step "$t" test_binary "$t"
    done
    step crictl env CRIUS_BIN="$bin" crictl-tests/run.sh
fi
# critest, where one spec cannot pass offline: it pulls upstream's image by
# upstream's digest, which no image rebuilt here has (e2e/conformance/images.sh).
# Any other failure fails the step.
critest_offline() {
    local status=0 failures
    "$@" || status=$?
    [ "$status" -ne 0 ] || return 0
    failures=$(grep '^FAIL ' "$logs/critest.log" | grep -v 'public image with digest should be pulled and removed')
    [ -z "$failures" ] && grep -q '^critest: .* 1 failed' "$logs/critest.log" || return "$status"
    echo "critest: only the digest-pinned spec failed, as it must offline"
}
if [ -n "${CRITEST:-}" ]; then
    # Its registry takes a free port of its own: the test images' one is
    # still served.
    step critest critest_offline env -u CRIUS_E2E_REGISTRY CONFORMANCE_BIN="$bin" CONFORMANCE_OUT="$logs/conformance" \
        CONFORMANCE_REGISTRY_STORAGE="$work/conformance-registry/storage" CRITEST="$CRITEST" \
        e2e/conformance/run.sh
    grep '^critest:' "$logs/critest.log" | tail -1 | sed 's/^/     /'
fi

{
    echo "node lane $guest: kernel $kernel, $init, cgroup $cgroup, AppArmor $apparmor"
    printf '  %s\n' "${results[@]}"
    [ -z "${CRITEST:-}" ] || grep '^critest:' "$logs/critest.log" | tail -1 | sed 's/^/  /'
} >"$work/summary-$guest"
[ "$failures" -eq 0 ]
