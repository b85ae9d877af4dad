# Helpers for scenario scripts: source it, then call `crictl ...`.
set -euo pipefail

crictl() {
    "$CRICTL" --runtime-endpoint "$CRI_ENDPOINT" --image-endpoint "$CRI_ENDPOINT" --timeout 10s "$@"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# assert_contains TEXT NEEDLE
assert_contains() {
    case $1 in
    *"$2"*) ;;
    *) fail "expected to find '$2' in:
$1" ;;
    esac
}

# json_get JSON PYTHON-EXPR: evaluates EXPR with `d` bound to the parsed JSON.
json_get() {
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# harness_config FILE: prints the path of a copy of FILE whose images come from
# the harness registry ($CRIUS_E2E_REGISTRY; the configs say 127.0.0.1:5000).
harness_config() {
    local out
    out=$(mktemp "${CRICTL_TMP:-/tmp}/config.XXXXXX.json")
    sed "s|127\.0\.0\.1:5000|${CRIUS_E2E_REGISTRY:-127.0.0.1:5000}|g" "$1" >"$out"
    echo "$out"
}
