#!/usr/bin/env bash
# `make deb`: the Debian package, built by cargo-deb (installed by
# e2e/install-deps.sh when absent) into target/debian/.
#   packaging/deb.sh               # release build, then the package
#   PROFILE=dev packaging/deb.sh   # from target/debug's binaries, unbuilt (tests)
# Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
CRIUS_CARGO_DEB=1 e2e/install-deps.sh
export PATH=$HOME/.cargo/bin:$PATH

profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release --quiet --bins
    bin_dir=target/release
    build=(--no-build)
else
    # The tests' binaries, already built, stripped in the package's copy and
    # quickly compressed. cargo-deb warns that it is meant for release
    # profiles; the version install-deps.sh pins accepts dev.
    bin_dir=target/debug
    build=(--no-build --profile dev --strip --no-separate-debug-symbols --fast -Z gz)
fi

# Assets made from the build: the unit for /usr/bin, criusctl's completions.
assets=target/debian-assets
mkdir -p "$assets"
sed "s|/usr/local/bin/criusd|/usr/bin/criusd|" manifests/crius.service >"$assets/crius.service"
"$bin_dir/criusctl" completion bash >"$assets/criusctl.bash"
"$bin_dir/criusctl" completion zsh >"$assets/_criusctl"
"$bin_dir/criusctl" completion fish >"$assets/criusctl.fish"

# The system's xz or gzip: cargo-deb's built-in compressor took minutes here.
cargo deb --quiet -p crius --compress-system "${build[@]}" | tail -1
