#!/usr/bin/env bash
# `crictl checkpoint --export`: a running container's checkpoint archive,
# the container running on. Where criu cannot work (`criu check` fails, as
# on kernels newer than the node's criu) the runtime refuses, naming criu,
# and writes nothing.
. "$CRICTL_TESTS/lib.sh"

pod_config=$(pod_config "$CRICTL_TESTS/configs/pod-config.json")
config=$(harness_config "$CRICTL_TESTS/configs/container-config.json")
image=$(json_get "$(cat "$config")" 'd["image"]["image"]')
# Before Linux 5.13 criu cannot dump a process that registered rseq (as
# busybox's glibc does): there the container starts without it.
if [ "$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')" -lt 5013 ]; then
    python3 - "$config" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["envs"].append({"key": "GLIBC_TUNABLES", "value": "glibc.pthread.rseq=0"})
json.dump(d, open(sys.argv[1], "w"))
PY
fi
crictl pull "$image" >/dev/null

pod=$(crictl runp "$pod_config")
cid=$(crictl create "$pod" "$config" "$pod_config")
crictl start "$cid" >/dev/null
archive=$(mktemp -d "${CRICTL_TMP:-/tmp}/checkpoint.XXXXXX")/c.tar

if criu check >/dev/null 2>&1; then
    crictl checkpoint --export="$archive" "$cid" >/dev/null
    listing=$(tar -tf "$archive")
    for entry in config.dump spec.dump rootfs-diff.tar checkpoint/; do
        assert_contains "$listing" "$entry"
    done
else
    if out=$(crictl checkpoint --export="$archive" "$cid" 2>&1); then
        fail "checkpoint succeeded where criu check fails"
    fi
    assert_contains "$out" "criu"
    [ ! -e "$archive" ] || fail "an archive was left at $archive"
fi

info=$(crictl inspect -o json "$cid")
state=$(json_get "$info" 'd["status"]["state"]')
case $state in 1 | CONTAINER_RUNNING) ;; *) fail "state after checkpoint $state" ;; esac
crictl rmp -f "$pod" >/dev/null
