# Helpers for scenario scripts: source it, then call `crictl ...`.
set -euo pipefail

crictl() {
    "$CRICTL" --runtime-endpoint "$CRI_ENDPOINT" --image-endpoint "$CRI_ENDPOINT" \
        --timeout "$((10 * ${CRIUS_TEST_SLOWDOWN:-1}))s" "$@"
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

# The cgroup driver criusd picks here by default: systemd where it is init.
node_cgroup_driver() {
    if [ -d /run/systemd/system ]; then echo systemd; else echo cgroupfs; fi
}

# pod_config FILE: prints the path of FILE as kubelet would send it on this
# node: its cgroupfs-style cgroup_parent (/kubepods/besteffort/pod<uid>)
# becomes the slice path kubelet's systemd driver sends where systemd is the
# driver (kubelet escapes the uid's dashes as '_').
pod_config() {
    if [ "$(node_cgroup_driver)" = cgroupfs ]; then
        echo "$1"
        return
    fi
    local out
    out=$(mktemp "${CRICTL_TMP:-/tmp}/pod.XXXXXX.json")
    python3 - "$1" >"$out" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
parent = config.get("linux", {}).get("cgroup_parent", "")
if parent.startswith("/kubepods/"):
    qos, pod = parent.split("/")[2:4]
    pod = pod.replace("-", "_")
    config["linux"]["cgroup_parent"] = (
        f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-{pod}.slice")
json.dump(config, sys.stdout)
EOF
    echo "$out"
}
