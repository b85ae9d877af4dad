#!/usr/bin/env bash
# Streaming as an operator uses it: exec (output, stdin, exit codes) and
# port-forward to a pod's web server, over SPDY and over WebSocket.
. "$CRICTL_TESTS/lib.sh"

pod_config=$CRICTL_TESTS/configs/web-pod.json
config=$(harness_config "$CRICTL_TESTS/configs/web-container.json")
crictl pull "$(json_get "$(cat "$config")" 'd["image"]["image"]')" >/dev/null

pod=$(crictl runp "$pod_config")
cid=$(crictl create "$pod" "$config" "$pod_config")
crictl start "$cid" >/dev/null

# Both transports: criusctl's default is websocket, crictl's spdy.
for transport in websocket spdy; do
    [ "$(crictl exec --transport "$transport" "$cid" echo streamed)" = streamed ] || fail "exec output ($transport)"
    [ "$(echo piped | crictl exec --transport "$transport" -i "$cid" cat)" = piped ] || fail "exec stdin ($transport)"
    set +e
    said=$(crictl exec --transport "$transport" "$cid" sh -c 'exit 3' 2>&1)
    code=$?
    set -e
    # criusctl exits with the command's code; crictl says it and exits 1.
    [ "$code" -eq 3 ] || { [ "$code" -ne 0 ] && [[ $said == *"exit code 3"* ]]; } ||
        fail "exec exit code over $transport: $code ($said)"

    # port-forward on a free local port; only loopback is contacted.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # The binary itself in the background (not the crictl function, whose
    # subshell would be what $! names), so killing $forwarder stops it.
    "$CRICTL" --runtime-endpoint "$CRI_ENDPOINT" --image-endpoint "$CRI_ENDPOINT" --timeout "$((10 * ${CRIUS_TEST_SLOWDOWN:-1}))s" \
        port-forward --transport "$transport" "$pod" "$port:80" >"$CRICTL_TMP/pf.out" 2>&1 &
    forwarder=$!
    trap 'kill $forwarder 2>/dev/null || true' EXIT
    body=
    for _ in $(seq 1 $((50 * ${CRIUS_TEST_SLOWDOWN:-1}))); do
        body=$(curl -fsS --noproxy '*' -m 2 "http://127.0.0.1:$port/" 2>/dev/null) && break
        sleep 0.1
    done
    assert_contains "$body" "crius test page"
    kill "$forwarder"
    wait "$forwarder" 2>/dev/null || true
done

crictl rmp -f "$pod" >/dev/null
rm -rf /tmp/crius-web-logs
