#!/usr/bin/env bash
# `make nri-check NRI_PLUGINS=dir`: NRI's sample plugins, built outside this
# repository from github.com/containerd/nri (v0.12; `plugins/logger`,
# `device-injector`, `ulimit-adjuster`, `hook-injector`, `differ`,
# `template`), against a criusd of its own, each checked for what its README
# says it does:
#   logger           logs every event with its pod and container (external,
#                    and pre-installed as 10-logger with a conf.d file that
#                    also makes it add an environment variable)
#   device-injector  the pod's annotation puts the device node in the container
#   ulimit-adjuster  the pod's annotation sets the rlimit
#   hook-injector    a hook from an OCI hooks dir runs (needs
#                    /etc/containers/oci/hooks.d; a file of its own is put
#                    there for the run and removed)
#   differ, template connect, see the container's life, and let it run
# Plugins missing from the dir are reported skipped. Needs root. Prints one
# line per check and "N passed, N failed"; exits 0 when none failed. The
# daemon's and plugins' logs go to $NRI_CHECK_OUT (default target/nri-check).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${NRI_PLUGINS:-}" ]; then
    cat <<'EOF'
nri-check: set NRI_PLUGINS to a directory with NRI's sample plugins (logger,
device-injector, ulimit-adjuster, hook-injector, differ, template) built from
github.com/containerd/nri v0.12 outside this repository, e.g.
    make nri-check NRI_PLUGINS=/opt/nri-plugins/bin
EOF
    exit 0
fi
plugins=$(realpath "$NRI_PLUGINS")
[ "$(id -u)" -eq 0 ] || { echo "nri-check: criusd needs root" >&2; exit 1; }

out=${NRI_CHECK_OUT:-target/nri-check}
mkdir -p "$out"
out=$(realpath "$out")

if [ -n "${NRI_CHECK_BIN:-}" ]; then
    bin=$(realpath "$NRI_CHECK_BIN")
else
    echo "== build"
    cargo build --workspace --quiet
    bin=$PWD/target/debug
fi

work=$(mktemp -d /tmp/crius-nri-check.XXXXXX)
chmod 0711 "$work"
sock=$work/crius.sock
nri=$work/nri.sock
hookdir=/etc/containers/oci/hooks.d
hookfile=$hookdir/crius-nri-check-$$.json
# The part of the hooks dir this run makes, removed with its file.
made_hookdir=$(p=$hookdir; while [ ! -e "$p" ]; do made=$p; p=$(dirname "$p"); done; echo "${made:-}")
daemon='' plugin_pid=''
passed=0 failed=0

stop_pid() { # SIGTERM, then SIGKILL after 5 s
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    [ -z "$plugin_pid" ] || stop_pid "$plugin_pid"
    if [ -n "$daemon" ]; then
        timeout 60 "$bin/criusctl" -r "unix://$sock" rmp -f -a >/dev/null 2>&1
        stop_pid "$daemon"
    fi
    rm -f "$hookfile"
    [ -z "$made_hookdir" ] || rmdir -p --ignore-fail-on-non-empty "$hookdir" 2>/dev/null
    e2e/registry.sh stop "$work/registry" >/dev/null 2>&1
    grep -o " ${work}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    cp "$work"/*.log "$out/" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ctl() { "$bin/criusctl" -r "unix://$sock" "$@"; }
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; }

echo "== registry and image"
e2e/registry.sh start "$work/registry" >/dev/null
reg=$(cat "$work/registry/addr")
"$bin/crius-e2e" push-images --registry "$reg" --out "$work/images.json" >/dev/null
image=$reg/crius-test/busybox:latest

echo "== criusd"
mkdir -p "$work/plugins" "$work/conf.d" "$work/logs"
# A pre-installed plugin: the logger, configured from conf.d.
if [ -x "$plugins/logger" ]; then
    ln -s "$plugins/logger" "$work/plugins/10-logger"
    cat >"$work/conf.d/10-logger.conf" <<EOF
logFile: $work/preinstalled-logger.log
events: [runpodsandbox, stoppodsandbox, removepodsandbox, createcontainer, startcontainer, stopcontainer, removecontainer]
addEnv: NRI_PREINSTALLED_LOGGER
EOF
fi
cat >"$work/config.toml" <<EOF
[network.builtin]
enabled = false
[metrics]
address = ""
[nri]
socket_path = "$nri"
plugin_path = "$work/plugins"
plugin_config_path = "$work/conf.d"
EOF
"$bin/criusd" --config "$work/config.toml" --listen "$sock" --root "$work/root" \
    --state "$work/state" --log-level debug >"$work/criusd.log" 2>&1 </dev/null &
daemon=$!
for _ in $(seq 1 100); do
    [ -S "$sock" ] && break
    sleep 0.1
done
[ -S "$sock" ] || { tail -n 30 "$work/criusd.log" >&2; echo "nri-check: criusd did not start" >&2; exit 1; }
ctl pull "$image" >/dev/null

# run_pod NAME ANNOTATIONS_JSON: a pod with one busybox container "c0"
# (sleeping), started; prints "pod-id ctr-id".
run_pod() {
    local name=$1 annotations=$2
    cat >"$work/$name-pod.json" <<EOF
{"metadata": {"name": "$name", "namespace": "nri-check", "uid": "uid-$name"},
 "annotations": $annotations,
 "log_directory": "$work/logs/$name",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
EOF
    cat >"$work/$name-ctr.json" <<EOF
{"metadata": {"name": "c0"}, "image": {"image": "$image"},
 "command": ["sleep", "600"], "log_path": "c0.log"}
EOF
    local pod ctr
    pod=$(ctl runp "$work/$name-pod.json")
    ctr=$(ctl create "$pod" "$work/$name-ctr.json" "$work/$name-pod.json")
    ctl start "$ctr" >/dev/null
    echo "$pod $ctr"
}

end_pod() { # end_pod POD CTR: the whole life to its end
    ctl stop "$2" >/dev/null
    ctl rm "$2" >/dev/null
    ctl stopp "$1" >/dev/null
    ctl rmp "$1" >/dev/null
}

# start_plugin NAME ARGS...: an external plugin connected to the socket; waits
# until criusd lists it.
start_plugin() {
    local name=$1 flag=-socket
    shift
    # The samples name their socket flag -socket-path or -socket.
    local help
    help=$("$plugins/$name" -h 2>&1 || true)
    [[ $help == *-socket-path* ]] && flag=-socket-path
    "$plugins/$name" "$flag" "$nri" "$@" >"$work/$name.log" 2>&1 &
    plugin_pid=$!
    for _ in $(seq 1 100); do
        if ctl info -v 2>/dev/null | grep -q "[0-9][0-9]-$name"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

stop_plugin() {
    stop_pid "$plugin_pid"
    plugin_pid=''
}

echo "== checks"
# ------------------------------------------------------------------ logger, pre-installed
if [ -x "$plugins/logger" ]; then
    read -r pod ctr < <(run_pod preinstalled '{}')
    env=$(ctl exec -s "$ctr" env || true)
    end_pod "$pod" "$ctr"
    if grep -q '^NRI_PREINSTALLED_LOGGER=logger-pid-' <<<"$env" \
        && grep -q 'RunPodSandbox' "$work/preinstalled-logger.log" 2>/dev/null; then
        pass "logger pre-installed (10-logger, conf.d): events logged, its env var in the container"
    else
        fail "logger pre-installed" "env: $(grep NRI_ <<<"$env" || echo none); log: $(wc -l <"$work/preinstalled-logger.log" 2>/dev/null || echo missing)"
    fi
else
    skip "logger pre-installed" "no $plugins/logger"
fi

# ------------------------------------------------------------------ logger, external
if [ -x "$plugins/logger" ] && start_plugin logger -idx 20 -log-file "$work/logger-events.log"; then
    read -r pod ctr < <(run_pod logged '{}')
    end_pod "$pod" "$ctr"
    sleep 0.5
    missing=()
    for event in RunPodSandbox CreateContainer PostCreateContainer StartContainer PostStartContainer \
        StopContainer RemoveContainer StopPodSandbox RemovePodSandbox; do
        grep -q "$event" "$work/logger-events.log" || missing+=("$event")
    done
    if [ ${#missing[@]} -eq 0 ] && grep -q 'logged' "$work/logger-events.log" \
        && grep -q 'c0' "$work/logger-events.log"; then
        pass "logger: every event logged with its pod and container"
    else
        fail "logger" "missing: ${missing[*]:-none} (see logger-events.log)"
    fi
    stop_plugin
else
    skip "logger" "not present or did not connect"
fi

# ------------------------------------------------------------------ device-injector
if [ -x "$plugins/device-injector" ] && start_plugin device-injector -idx 30; then
    read -r pod ctr < <(run_pod devices '{"devices.noderesource.dev/container.c0": "- path: /dev/nri-null\n  type: c\n  major: 1\n  minor: 3\n  file_mode: 0666\n"}')
    got=$(ctl exec -s "$ctr" stat -c '%F %t:%T' /dev/nri-null 2>&1 || true)
    end_pod "$pod" "$ctr"
    if [ "$got" = "character special file 1:3" ]; then
        pass "device-injector: the annotated device node is in the container"
    else
        fail "device-injector" "stat /dev/nri-null: $got"
    fi
    stop_plugin
else
    skip "device-injector" "not present or did not connect"
fi

# ------------------------------------------------------------------ ulimit-adjuster
if [ -x "$plugins/ulimit-adjuster" ] && start_plugin ulimit-adjuster -idx 40; then
    read -r pod ctr < <(run_pod ulimits '{"ulimits.noderesource.dev/container.c0": "- type: RLIMIT_NOFILE\n  soft: 1111\n  hard: 2222\n"}')
    got=$(ctl exec -s "$ctr" sh -c 'ulimit -Sn; ulimit -Hn' 2>&1 | tr '\n' ' ' || true)
    end_pod "$pod" "$ctr"
    if [ "$got" = "1111 2222 " ]; then
        pass "ulimit-adjuster: the annotated rlimit is set"
    else
        fail "ulimit-adjuster" "ulimit -n soft/hard: $got"
    fi
    stop_plugin
else
    skip "ulimit-adjuster" "not present or did not connect"
fi

# ------------------------------------------------------------------ hook-injector
if [ -x "$plugins/hook-injector" ]; then
    mkdir -p "$hookdir"
    cat >"$work/hook.sh" <<EOF
#!/bin/sh
echo "hook ran: \$*" >>"$work/hook-ran.log"
EOF
    chmod 0755 "$work/hook.sh"
    cat >"$hookfile" <<EOF
{"version": "1.0.0",
 "hook": {"path": "$work/hook.sh", "args": ["hook.sh", "prestart"]},
 "when": {"annotations": {"^crius-nri-check/hook$": "^yes$"}},
 "stages": ["prestart"]}
EOF
    if start_plugin hook-injector -idx 50; then
        read -r pod ctr < <(run_pod hooked '{"crius-nri-check/hook": "yes"}')
        end_pod "$pod" "$ctr"
        if grep -q 'hook ran: prestart' "$work/hook-ran.log" 2>/dev/null; then
            pass "hook-injector: the injected OCI hook ran"
        else
            fail "hook-injector" "the hook did not run (see hook-injector.log)"
        fi
        stop_plugin
    else
        skip "hook-injector" "did not connect"
    fi
    rm -f "$hookfile"
else
    skip "hook-injector" "no $plugins/hook-injector"
fi

# ------------------------------------------------------------------ differ, template
for name in differ template; do
    args=(-idx 60) last="Removed pod nri-check/$name"
    # The differ registers itself at 00 and 99 and names the event.
    [ "$name" = differ ] && args=() last=RemovePodSandbox
    if [ -x "$plugins/$name" ] && start_plugin "$name" "${args[@]}"; then
        read -r pod ctr < <(run_pod "$name" '{}')
        running=$(ctl ps -q --no-trunc --state running 2>/dev/null || true)
        end_pod "$pod" "$ctr"
        sleep 0.5
        if kill -0 "$plugin_pid" 2>/dev/null && grep -q "$ctr" <<<"$running" \
            && grep -q "$last" "$work/$name.log"; then
            pass "$name: connected, saw the pod's whole life, the container ran"
        else
            fail "$name" "plugin gone, events missing or container not running (see $name.log)"
        fi
        stop_plugin
    else
        skip "$name" "not present or did not connect"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
