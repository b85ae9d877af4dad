#!/usr/bin/env bash
# Pod networking as an operator sees it: the network is ready, a pod gets an
# address that serves, and its host port answers on loopback. Only loopback
# and the pod's own address are contacted.
. "$CRICTL_TESTS/lib.sh"

pod_config=$CRICTL_TESTS/configs/web-pod.json
config=$(harness_config "$CRICTL_TESTS/configs/web-container.json")
crictl pull "$(json_get "$(cat "$config")" 'd["image"]["image"]')" >/dev/null

info=$(crictl info -o json)
ready=$(json_get "$info" '[c["status"] for c in d["status"]["conditions"] if c["type"] == "NetworkReady"][0]')
[ "$ready" = True ] || fail "NetworkReady: $info"

pod=$(crictl runp "$pod_config")
cid=$(crictl create "$pod" "$config" "$pod_config")
crictl start "$cid" >/dev/null
ip=$(json_get "$(crictl inspectp -o json "$pod")" 'd["status"]["network"]["ip"]')
[ -n "$ip" ] || fail "no pod IP"

fetch() {
    for _ in $(seq 1 $((50 * ${CRIUS_TEST_SLOWDOWN:-1}))); do
        curl -fsS --noproxy '*' -m 2 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
assert_contains "$(fetch "http://$ip/")" "crius test page"
assert_contains "$(fetch "http://127.0.0.1:31080/")" "crius test page"

crictl rmp -f "$pod" >/dev/null
if curl -fsS --noproxy '*' -m 2 "http://127.0.0.1:31080/" >/dev/null 2>&1; then
    fail "the host port still answers after the pod is gone"
fi
rm -rf /tmp/crius-web-logs
