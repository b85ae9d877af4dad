#!/usr/bin/env bash
# `version` and `info` as an operator runs them first on a new node.
. "$CRICTL_TESTS/lib.sh"

out=$(crictl version)
assert_contains "$out" "RuntimeName:  crius"
assert_contains "$out" "RuntimeApiVersion:  v1"

info=$(crictl info)
[ "$(json_get "$info" 'd["status"]["conditions"][0]["type"]')" = RuntimeReady ] || fail "first condition is not RuntimeReady"
[ "$(json_get "$info" 'd["status"]["conditions"][0]["status"]')" = True ] || fail "runtime not ready: $info"
[ "$(json_get "$info" 'd["status"]["conditions"][1]["type"]')" = NetworkReady ] || fail "no NetworkReady condition"
[ "$(json_get "$info" 'd["cgroups"]["driver"]')" = "$(node_cgroup_driver)" ] || fail "cgroup driver"
