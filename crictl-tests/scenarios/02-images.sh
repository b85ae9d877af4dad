#!/usr/bin/env bash
# Image lifecycle as an operator drives it: pull, list, inspect, remove.
# Needs the harness registry (crius-test images on $CRIUS_E2E_REGISTRY).
. "$CRICTL_TESTS/lib.sh"

reg=${CRIUS_E2E_REGISTRY:-127.0.0.1:5000}
image=$reg/crius-test/user-name:latest

out=$(crictl pull "$image")
assert_contains "$out" "Image is up to date for sha256:"
id=${out##* }

assert_contains "$(crictl images)" "$reg/crius-test/user-name"
[ "$(crictl images -q "$image")" = "$id" ] || fail "images -q $image is not $id"

info=$(crictl inspecti -o json "$image")
# crictl prints camelCase keys, criusctl the proto names: accept either.
[ "$(json_get "$info" 'd["status"].get("username") or d["status"].get("user_name")')" = someuser ] || fail "username: $info"
[ "$(json_get "$info" 'd["status"]["id"]')" = "$id" ] || fail "id: $info"

fs=$(crictl imagefsinfo -o json)
used=$(json_get "$fs" '(lambda f: (f.get("usedBytes") or f.get("used_bytes"))["value"])(d["status"].get("imageFilesystems", d["status"].get("image_filesystems"))[0])')
[ "$used" -gt 1000000 ] || fail "image fs used bytes: $used"

crictl rmi "$image" >/dev/null
[ -z "$(crictl images -q "$image")" ] || fail "image still listed after rmi"
# Removing again is not an error for the runtime (crictl itself may complain).
crictl rmi "$id" >/dev/null 2>&1 || true
