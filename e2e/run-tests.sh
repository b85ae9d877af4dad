#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: installs what is needed,
# checks format and lints, starts the local registry, pushes the test images,
# runs unit and integration tests against real processes, then the crictl
# scenario tests and the packaging tests (make install, the .deb, make demo;
# cargo-deb is installed once), and the VM lane's CI part in a Debian 12 guest
# (e2e/node/; skipped, saying so, where qemu cannot run a guest). Everything
# it starts is stopped on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CRIUS_CARGO_DEB=1 e2e/install-deps.sh

work=$(mktemp -d /tmp/crius-e2e.XXXXXX)
cleanup() {
    e2e/registry.sh stop "$work/registry" || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --all-targets --quiet

echo "== registry and test images"
e2e/registry.sh start "$work/registry"
CRIUS_E2E_REGISTRY=$(cat "$work/registry/addr")
target/debug/crius-e2e push-images --registry "$CRIUS_E2E_REGISTRY" --out "$work/images.json"
export CRIUS_E2E_REGISTRY CRIUS_E2E_IMAGES=$work/images.json CRIUS_E2E_REGISTRY_STORAGE=$work/registry/storage

echo "== unit and integration tests"
cargo test --workspace --quiet -- --include-ignored

echo "== crictl scenario tests"
crictl-tests/run.sh

echo "== packaging: make install, the .deb, make demo"
e2e/packaging-tests.sh

echo "== node lane (Debian 12 guest: systemd, cgroup v2, AppArmor, kernel 6.1)"
if reason=$(e2e/node/node.sh debian12 can-run); then
    e2e/node/lane.sh --ci debian12
else
    echo "SKIPPED node lane: $reason"
fi
