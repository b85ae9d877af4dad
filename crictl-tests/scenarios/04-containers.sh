#!/usr/bin/env bash
# Container lifecycle with crictl's sample configs: create, start, ps, logs,
# exec, inspect, update, stop, rm; then `run` and a forced pod removal.
. "$CRICTL_TESTS/lib.sh"

pod_config=$(pod_config "$CRICTL_TESTS/configs/pod-config.json")
config=$(harness_config "$CRICTL_TESTS/configs/container-config.json")
image=$(json_get "$(cat "$config")" 'd["image"]["image"]')
crictl pull "$image" >/dev/null

pod=$(crictl runp "$pod_config")
cid=$(crictl create "$pod" "$config" "$pod_config")
[ ${#cid} -eq 64 ] || fail "create printed $cid"
assert_contains "$(crictl ps -a)" "Created"
crictl start "$cid" >/dev/null
assert_contains "$(crictl ps)" "busybox"
[ "$(crictl ps -q --label role=main)" = "$cid" ] || fail "ps --label"

for _ in $(seq 1 $((50 * ${CRIUS_TEST_SLOWDOWN:-1}))); do
    crictl logs "$cid" 2>&1 | grep -q "hello from crius" && break
    sleep 0.1
done
assert_contains "$(crictl logs "$cid")" "hello from crius"
[ "$(crictl exec -s "$cid" sh -c 'echo $GREETING')" = hi ] || fail "exec env"
if crictl exec -s "$cid" sh -c 'exit 3'; then fail "exec exit code lost"; fi

info=$(crictl inspect -o json "$cid")
state=$(json_get "$info" 'd["status"]["state"]')
case $state in 1 | CONTAINER_RUNNING) ;; *) fail "state $state" ;; esac
crictl update --memory 134217728 "$cid" >/dev/null
info=$(crictl inspect -o json "$cid")
# crictl prints protobuf JSON names (camelCase), criusctl the proto field names.
limit=$(json_get "$info" 'd["status"]["resources"]["linux"].get("memoryLimitInBytes", d["status"]["resources"]["linux"].get("memory_limit_in_bytes"))')
[ "$limit" = 134217728 ] || fail "update: memory limit $limit"

crictl stop "$cid" >/dev/null
info=$(crictl inspect -o json "$cid")
state=$(json_get "$info" 'd["status"]["state"]')
case $state in 2 | CONTAINER_EXITED) ;; *) fail "state after stop $state" ;; esac
[ "$(json_get "$info" 'd["status"].get("exitCode", d["status"].get("exit_code"))')" = 137 ] || fail "exit code: $info"
crictl rm "$cid" >/dev/null
[ -z "$(crictl ps -a -q)" ] || fail "container still listed after rm"
crictl rmp -f "$pod" >/dev/null

# run: a pod and a running container in one go; rmp -f takes both.
cid=$(crictl run "$config" "$pod_config")
assert_contains "$(crictl ps -q)" "$cid"
crictl rmp -f -a >/dev/null
[ -z "$(crictl ps -a -q)" ] || fail "rmp -f left containers"
[ -z "$(crictl pods -q)" ] || fail "rmp -f left pods"
rm -rf /tmp/crius-pod-logs
