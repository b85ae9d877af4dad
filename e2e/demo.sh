#!/usr/bin/env bash
# `make demo`: a first pod, with no internet. Against a running criusd (the one
# `make run` serves, or $CRIUS_ENDPOINT) it starts the harness registry on a
# free loopback port, pushes the demo image (busybox httpd) to it, runs the
# example pod of manifests/pods/ with criusctl, prints the pod's address and
# how to fetch its page, and waits. Ctrl-C (or SIGTERM) removes the pod, the
# image and the registry.
#   CRIUS_ENDPOINT  the daemon (default unix:///run/crius/crius.sock)
#   CRIUSCTL        the client (default target/release/criusctl, else criusctl on PATH)
#   DEMO_HOST_PORT  the host port mapped to the pod's port 80 (default 8080)
#   CRIUS_E2E_BIN   the image builder, already built (default: built in release)
set -euo pipefail
cd "$(dirname "$0")/.."

endpoint=${CRIUS_ENDPOINT:-unix:///run/crius/crius.sock}
host_port=${DEMO_HOST_PORT:-8080}
criusctl_bin=${CRIUSCTL:-}
if [ -z "$criusctl_bin" ]; then
    if [ -x target/release/criusctl ]; then
        criusctl_bin=target/release/criusctl
    else
        criusctl_bin=$(command -v criusctl) || { echo "demo: no criusctl: make build, or make install" >&2; exit 1; }
    fi
fi
criusctl() { "$criusctl_bin" -r "$endpoint" -t 60s "$@"; }

if ! criusctl version >/dev/null 2>&1; then
    echo "demo: no criusd answers on $endpoint; start one first (make run, in another terminal)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/crius-demo.XXXXXX)
pod=
image=
sleeper=
cleanup() {
    trap - EXIT INT TERM
    echo "demo: cleaning up"
    [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
    [ -z "$pod" ] || criusctl rmp -f "$pod" >/dev/null || true
    [ -z "$image" ] || criusctl rmi "$image" >/dev/null || true
    e2e/registry.sh stop "$work/registry" || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: building the demo image"
e2e_bin=${CRIUS_E2E_BIN:-}
if [ -z "$e2e_bin" ]; then
    cargo build --release --quiet -p crius-e2e
    e2e_bin=target/release/crius-e2e
fi
# A registry of the demo's own (a free port: another may serve 5000).
CRIUS_E2E_REGISTRY='' e2e/registry.sh start "$work/registry" >/dev/null
registry=$(cat "$work/registry/addr")
"$e2e_bin" push-images --registry "$registry" --out "$work/images.json" >/dev/null
image=$registry/crius-test/httpd:latest

# The example's configs with the registry's real address, the chosen host
# port, and logs in the demo's directory.
sed -e "s|127\.0\.0\.1:5000|$registry|" manifests/pods/httpd-container.json >"$work/container.json"
sed -e "s|\"host_port\": 8080|\"host_port\": $host_port|" \
    -e "s|\"log_directory\": \"[^\"]*\"|\"log_directory\": \"$work/logs\"|" \
    manifests/pods/httpd-pod.json >"$work/pod.json"

echo "demo: pulling $image"
criusctl pull "$image" >/dev/null
pod=$(criusctl runp "$work/pod.json")
container=$(criusctl create "$pod" "$work/container.json" "$work/pod.json")
criusctl start "$container" >/dev/null
ip=$(criusctl inspectp -o json "$pod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["network"]["ip"])')

for _ in $(seq 1 50); do
    curl -fsS --noproxy '*' -m 2 -o /dev/null "http://$ip/" 2>/dev/null && break
    sleep 0.1
done

short=${container:0:13}
echo "demo: pod httpd (${pod:0:13}) runs busybox httpd at $ip:"
echo
printf '    %-40s # %s\n' "curl http://$ip/" "the pod's own address" \
    "curl http://127.0.0.1:$host_port/" "its host port" \
    "$criusctl_bin ps" "the pod's container" \
    "$criusctl_bin logs $short" "httpd's log" \
    "$criusctl_bin exec -it $short sh" "a shell inside"
echo
echo "demo: ready; Ctrl-C removes the pod, the image and the registry"
# `wait` returns when a trapped signal arrives; sleep alone would delay it.
sleep infinity &
sleeper=$!
wait "$sleeper" || true
