#!/usr/bin/env bash
# Resource usage: `stats` and `statsp` list a running container and its pod,
# in tables and as JSON.
. "$CRICTL_TESTS/lib.sh"

pod_config=$(pod_config "$CRICTL_TESTS/configs/pod-config.json")
config=$(harness_config "$CRICTL_TESTS/configs/container-config.json")
image=$(json_get "$(cat "$config")" 'd["image"]["image"]')
crictl pull "$image" >/dev/null
cid=$(crictl run "$config" "$pod_config")
pod=$(crictl pods -q)

table=$(crictl stats -s 1)
assert_contains "$table" "CPU %"
assert_contains "$table" "${cid:0:13}"
assert_contains "$table" "busybox"
stats=$(crictl stats -o json --id "$cid")
[ "$(json_get "$stats" 'd["stats"][0]["attributes"]["id"]')" = "$cid" ] || fail "stats --id: $stats"
json_get "$stats" 'd["stats"][0]["cpu"]' >/dev/null || fail "no cpu in $stats"
json_get "$stats" 'd["stats"][0]["memory"]' >/dev/null || fail "no memory in $stats"

table=$(crictl statsp)
assert_contains "$table" "${pod:0:13}"
assert_contains "$table" "crius-sandbox"
stats=$(crictl statsp -o json)
[ "$(json_get "$stats" 'd["stats"][0]["attributes"]["id"]')" = "$pod" ] || fail "statsp: $stats"
[ "$(json_get "$stats" 'len(d["stats"][0]["linux"]["containers"])')" = 1 ] || fail "statsp containers: $stats"

if crictl stats -o json --id 0000000000000000 | grep -q attributes; then fail "stats of a missing id"; fi
crictl rmp -f -a >/dev/null
rm -rf /tmp/crius-pod-logs
