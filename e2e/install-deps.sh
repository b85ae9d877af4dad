#!/usr/bin/env bash
# Installs the Debian packages crius and its tests need; does nothing when they
# are all present (so no apt-get update on a prepared machine).
set -euo pipefail

packages=(
    runc crun                       # OCI runtime handlers
    libseccomp-dev                  # criusd compiles seccomp profiles for exec
    containernetworking-plugins     # CNI plugins in /usr/lib/cni
    iptables iproute2               # host ports, masquerade; test namespaces
    docker-registry                 # the harness's local registry
    busybox-static                  # what the test images are made of
    umoci                           # layers as other builders make them
    apparmor                        # apparmor_parser checks crius's default profile
    curl ca-certificates make
)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps.sh: cargo (Rust >= 1.90) is needed to build crius" >&2
    exit 1
fi

# cargo-deb builds the Debian package (`make deb`, and the packaging tests):
# installed once into ~/.cargo/bin, only for those who ask for it.
CARGO_DEB_VERSION=3.8.0
if [ "${CRIUS_CARGO_DEB:-0}" = 1 ] && ! "$HOME/.cargo/bin/cargo-deb" --version >/dev/null 2>&1; then
    echo "installing cargo-deb $CARGO_DEB_VERSION (once)"
    cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
