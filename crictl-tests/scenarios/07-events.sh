#!/usr/bin/env bash
# Container events: `events` follows a pod and a container through their
# lives as JSON lines.
. "$CRICTL_TESTS/lib.sh"

pod_config=$(pod_config "$CRICTL_TESTS/configs/pod-config.json")
config=$(harness_config "$CRICTL_TESTS/configs/container-config.json")
image=$(json_get "$(cat "$config")" 'd["image"]["image"]')
crictl pull "$image" >/dev/null
out=$(mktemp)
# Run directly (not through the shell function) so that $! is its PID.
"$CRICTL" --runtime-endpoint "$CRI_ENDPOINT" --timeout "$((10 * ${CRIUS_TEST_SLOWDOWN:-1}))s" events >"$out" &
follower=$!
trap 'kill $follower 2>/dev/null || true; rm -f "$out"' EXIT
sleep 0.5
cid=$(crictl run "$config" "$pod_config")
pod=$(crictl pods -q)
crictl rmp -f "$pod" >/dev/null
for _ in $(seq 1 $((50 * ${CRIUS_TEST_SLOWDOWN:-1}))); do
    [ "$(wc -l <"$out")" -ge 8 ] && break
    sleep 0.1
done
kill $follower 2>/dev/null || true
wait $follower 2>/dev/null || true
# crictl prints enum names, criusctl their numbers: compare as (kind, id).
seen=$(python3 - "$out" <<'PY'
import json, sys
names = {0: "CREATED", 1: "STARTED", 2: "STOPPED", 3: "DELETED"}
# One object per line (criusctl) or pretty-printed ones (crictl).
text, events, at = open(sys.argv[1]).read(), [], 0
decoder = json.JSONDecoder()
while True:
    while at < len(text) and text[at].isspace():
        at += 1
    if at >= len(text):
        break
    e, at = decoder.raw_decode(text, at)
    events.append(e)
for e in events:
    kind = e.get("container_event_type", e.get("containerEventType", 0))
    kind = names.get(kind, str(kind).replace("CONTAINER_", "").replace("_EVENT", ""))
    print(kind, e.get("container_id", e.get("containerId")))
PY
)
expected="CREATED $pod
STARTED $pod
CREATED $cid
STARTED $cid
STOPPED $cid
STOPPED $pod
DELETED $cid
DELETED $pod"
[ "$seen" = "$expected" ] || fail "events:
$seen
expected:
$expected"
rm -rf /tmp/crius-pod-logs
