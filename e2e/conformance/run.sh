#!/usr/bin/env bash
# `make conformance`: Kubernetes' CRI conformance suite, critest from
# cri-tools v1.36.0, against a criusd of its own. Everything runs on this node:
# the images critest pulls are stand-ins built by images.sh and served by the
# harness's loopback registry, which every public registry name critest uses
# is mirrored to.
#
#   CRITEST=/path/to/critest e2e/conformance/run.sh [critest args...]
#   e.g. ... run.sh --ginkgo.focus='Image Manager'
#
# With `ginkgo` on PATH (the directory of $CRITEST is searched too) specs run
# on two parallel nodes, else one after another. Prints a summary from the
# JUnit report; the report, critest's output and criusd's log are copied to
# $CONFORMANCE_OUT (default target/conformance). Needs root, host ports
# 12000-12003 free and ipcmk (util-linux). Exits 0 when critest passes.
#
# The VM lane (e2e/node/) runs it in a guest with binaries and images made on
# the host: CONFORMANCE_BIN (built binaries: no install, no build) and
# CONFORMANCE_REGISTRY_STORAGE (a registry storage images.sh already filled).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${CRITEST:-}" ]; then
    cat <<'EOF'
conformance: set CRITEST to a critest binary from cri-tools v1.36.0, e.g.
    CRITEST=/opt/critools/bin/critest make conformance
critest is not part of crius: build it (and ginkgo) from the cri-tools v1.36.0
sources outside this repository, as that project's README says. With ginkgo
beside critest or on PATH, specs run on two parallel nodes.
EOF
    exit 0
fi
[ -x "$CRITEST" ] || { echo "conformance: CRITEST=$CRITEST is not an executable" >&2; exit 1; }
CRITEST=$(realpath "$CRITEST")
PATH=$PATH:$(dirname "$CRITEST")

# ------------------------------------------------------------------ prerequisites
problems=()
[ "$(id -u)" -eq 0 ] || problems+=("criusd needs root")
command -v ipcmk >/dev/null || problems+=("ipcmk is missing (Debian package util-linux); the HostIpc specs run it")
busy=$(python3 - <<'EOF'
import socket
for port in range(12000, 12004):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", port))
    except OSError:
        print(port, end=" ")
    finally:
        s.close()
EOF
)
[ -z "$busy" ] || problems+=("host ports 12000-12003 must be free for critest's port specs; in use: $busy")
if [ ${#problems[@]} -gt 0 ]; then
    printf 'conformance: %s\n' "${problems[@]}" >&2
    exit 1
fi

out=${CONFORMANCE_OUT:-target/conformance}
mkdir -p "$out"
out=$(realpath "$out")
rm -f "$out"/{junit.xml,critest.log,criusd.log,registry.log}

if [ -n "${CONFORMANCE_BIN:-}" ]; then
    bin=$(realpath "$CONFORMANCE_BIN")
else
    e2e/install-deps.sh
    echo "== build"
    cargo build --workspace --quiet
    bin=$PWD/target/debug
fi

# ------------------------------------------------------------------ work directory, clean-up
work=$(mktemp -d /tmp/crius-conformance.XXXXXX)
# Traversable by every uid, as /var/lib is: with a user namespace, the pod's
# root (a high host uid) must reach its rootfs under $work/root.
chmod 0711 "$work"
bridge=crconf$$
bridge=${bridge:0:15}
sock=$work/crius.sock
daemon='' critest_pid='' tail_pid='' shm_before=''

# critest's HostIpc specs make 1 MiB System V segments on the host with ipcmk
# and leave them; the run removes the unattached ones of that size it saw
# appear.
shm_ids() { awk 'NR > 1 { print $2, $4, $7 }' /proc/sysvipc/shm 2>/dev/null || true; }

stop_pid() { # stop_pid PID [GROUP]: SIGTERM, then SIGKILL after 10 s
    local pid=$1 target=$1
    [ "${2:-}" = group ] && target=-$1
    kill -TERM -- "$target" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "$target" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    trap '' INT TERM
    if [ -n "$critest_pid" ]; then
        # critest leads a process group of its own (its ginkgo and workers).
        local stat=()
        read -r -a stat <"/proc/$critest_pid/stat" 2>/dev/null
        if [ "${stat[4]:-}" = "$critest_pid" ]; then
            stop_pid "$critest_pid" group
        else
            stop_pid "$critest_pid"
        fi
    fi
    [ -z "$tail_pid" ] || stop_pid "$tail_pid"
    if [ -n "$daemon" ]; then
        # Pods go first: their containers outlive criusd.
        timeout 120 "$bin/criusctl" -r "unix://$sock" rmp -f -a >/dev/null 2>&1
        stop_pid "$daemon"
    fi
    # Containers a crashed criusd left, by ID from its own runtime roots.
    for handler in runc crun; do
        if ! [ -d "$work/state/oci/$handler" ] || ! command -v "$handler" >/dev/null; then
            continue
        fi
        for id in $("$handler" --root "$work/state/oci/$handler" list -q 2>/dev/null); do
            "$handler" --root "$work/state/oci/$handler" delete -f "$id" >/dev/null 2>&1
        done
    done
    e2e/registry.sh stop "$work/registry"
    "$bin/crius-e2e" remove-bridge "$bridge" >/dev/null 2>&1
    grep -o " ${work}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    if [ -n "$shm_before" ]; then
        shm_ids | while read -r id size attached; do
            if [ "$size" = 1048576 ] && [ "$attached" = 0 ] && ! grep -qx "$id" <<<"$shm_before"; then
                ipcrm -m "$id" 2>/dev/null
            fi
        done
    fi
    for f in junit.xml critest.log criusd.log; do
        [ -f "$work/$f" ] && cp "$work/$f" "$out/$f"
    done
    [ -f "$work/registry/registry.log" ] && cp "$work/registry/registry.log" "$out/registry.log"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "conformance: interrupted" >&2; exit 130' INT
trap 'echo "conformance: terminated" >&2; exit 143' TERM

# ------------------------------------------------------------------ registry and images
echo "== registry and images"
if [ -n "${CONFORMANCE_REGISTRY_STORAGE:-}" ]; then
    e2e/registry.sh start "$work/registry" "$CONFORMANCE_REGISTRY_STORAGE" >/dev/null
    reg=$(cat "$work/registry/addr")
else
    e2e/registry.sh start "$work/registry" >/dev/null
    reg=$(cat "$work/registry/addr")
    e2e/conformance/images.sh "$reg" "$out/images"
fi

# Every public registry critest names resolves to the loopback registry; the
# repository path is kept (gcr.io/k8s-staging-cri-tools/X ->
# <reg>/k8s-staging-cri-tools/X, docker.io/library/busybox -> library/busybox).
for host in docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io quay.io public.ecr.aws; do
    mkdir -p "$work/certs.d/$host"
    cat >"$work/certs.d/$host/hosts.toml" <<TOML
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve"]
TOML
done

# ------------------------------------------------------------------ criusd
mkdir -p "$work/net.d" "$work/tmp"
cat >"$work/config.toml" <<TOML
[image]
registry_config_path = "$work/certs.d"
credentials_file = ""

[network]
cni_conf_dir = "$work/net.d"

# A bridge and subnet of its own (crictl-tests use 10.197.0.0/24); pods'
# traffic is not masqueraded off the node.
[network.builtin]
bridge = "$bridge"
subnets = ["10.196.0.0/24"]
masquerade = false
TOML
# In a session of its own, like the registry: a Ctrl-C stops this script,
# whose clean-up then removes the pods through criusd before stopping it.
setsid "$bin/criusd" --config "$work/config.toml" --listen "$sock" --root "$work/root" \
    --state "$work/state" --log-level "${CONFORMANCE_LOG_LEVEL:-info}" \
    >"$work/criusd.log" 2>&1 </dev/null &
daemon=$!
for _ in $(seq 1 100); do
    [ -S "$sock" ] && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
if ! [ -S "$sock" ]; then
    tail -n 30 "$work/criusd.log" >&2
    echo "conformance: criusd did not start" >&2
    exit 1
fi

# ------------------------------------------------------------------ critest
args=(--runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock"
    --ginkgo.junit-report "$work/junit.xml")
if command -v ginkgo >/dev/null; then
    args+=(--parallel=2)
    mode="2 parallel nodes ($(command -v ginkgo))"
else
    mode="serially (no ginkgo on PATH)"
fi
[ -t 1 ] || args+=(--ginkgo.no-color)
echo "== critest $("$CRITEST" --version 2>/dev/null | awk '/critest version/ { print $3 }'), $mode"
shm_before=$(shm_ids | awk '{ print $1 }')
shm_before=${shm_before:-none}
# In a session of its own, so that clean-up can stop it with its ginkgo and
# workers as one process group; its output goes to a file that tail shows.
TMPDIR=$work/tmp setsid "$CRITEST" "${args[@]}" "$@" >"$work/critest.log" 2>&1 </dev/null &
critest_pid=$!
tail -n +1 -f --pid="$critest_pid" "$work/critest.log" &
tail_pid=$!
status=0
wait "$critest_pid" || status=$?
critest_pid=''
wait "$tail_pid" || true # it prints the rest and ends within a second
tail_pid=''

# ------------------------------------------------------------------ summary
echo
if ! [ -s "$work/junit.xml" ]; then
    echo "conformance: critest exited with status $status and wrote no JUnit report" >&2
    exit 1
fi
passed=true
python3 - "$work/junit.xml" <<'EOF' || passed=false
import re
import sys
import xml.etree.ElementTree as ET

ansi = re.compile(r"\x1b\[[0-9;]*m")
counts = {"passed": 0, "failed": 0, "skipped": 0}
failures = []
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = case.get("name", "")
    status = case.get("status")
    if status is None:  # JUnit from other reporters
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
        elif case.find("skipped") is not None:
            status = "skipped"
        else:
            status = "passed"
    if status in ("passed", "skipped", "pending"):
        # Suite set-up nodes ([SynchronizedBeforeSuite], ...) are no specs.
        if name.startswith("[It]"):
            counts["skipped" if status != "passed" else "passed"] += 1
        continue
    counts["failed"] += 1
    problem = case.find("failure")
    if problem is None:
        problem = case.find("error")
    text = ""
    if problem is not None:
        text = problem.get("message") or problem.text or ""
    failures.append((name, status, ansi.sub("", text)))

print("critest: {passed} passed, {failed} failed, {skipped} skipped".format(**counts))
for name, status, text in failures:
    print(f"FAIL {name}" + ("" if status == "failed" else f" ({status})"))
    # The message's first lines, up to a dump of an error's Go struct.
    lines = []
    for line in text.splitlines():
        if line.strip() == "{" or len(lines) == 6:
            break
        if line.strip():
            line = line.rstrip()
            lines.append(line if len(line) <= 240 else line[:237] + "...")
    for line in lines:
        print("     " + line)
sys.exit(1 if counts["failed"] else 0)
EOF
warnings=$(grep -cE '^\S+\s+(WARN|ERROR)\b' "$work/criusd.log" || true)
echo "report: $out/junit.xml; critest output: $out/critest.log;" \
    "criusd log: $out/criusd.log ($warnings warnings and errors)"
[ "$status" -eq 0 ] && $passed || exit 1
