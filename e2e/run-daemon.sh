#!/usr/bin/env bash
# `make run`: installs what is needed, builds criusd and runs it in the
# foreground with the built-in default configuration (unless an operator's
# /etc/crius/config.toml exists). Stop it with Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/install-deps.sh
cargo build --release --quiet --bins
echo "criusd starting; try: target/release/criusctl info"
exec target/release/criusd "$@"
