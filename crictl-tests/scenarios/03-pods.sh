#!/usr/bin/env bash
# Pod sandbox lifecycle: runp, pods, inspectp, stopp, rmp, with crictl's
# sample config (pod network, hostname, DNS, labels).
. "$CRICTL_TESTS/lib.sh"

config=$(pod_config "$CRICTL_TESTS/configs/pod-config.json")
id=$(crictl runp "$config")
[ ${#id} -eq 64 ] || fail "runp printed $id"

assert_contains "$(crictl pods)" "crius-sandbox"
[ "$(crictl pods -q --label app=crius-test)" = "$id" ] || fail "pods --label"

info=$(crictl inspectp -o json "$id")
state=$(json_get "$info" 'd["status"]["state"]')
case $state in 0 | SANDBOX_READY) ;; *) fail "state $state" ;; esac
[ "$(json_get "$info" 'd["status"]["metadata"]["name"]')" = crius-sandbox ] || fail "name: $info"

# A second sandbox with the same metadata is refused.
if crictl runp "$config" >/dev/null 2>&1; then fail "duplicate runp succeeded"; fi

crictl stopp "$id" >/dev/null
assert_contains "$(crictl pods --state notready -q)" "$id"
crictl rmp "$id" >/dev/null
[ -z "$(crictl pods -q)" ] || fail "pod still listed after rmp"
