# The two commands: `make run` (the daemon, built-in defaults) and `make test`
# (everything). Both install their Debian packages themselves.

.PHONY: run test test-node build lint clean bench conformance nri-check install uninstall deb demo

# `make install` / `make uninstall` (packaging/install.sh): binaries to
# $(DESTDIR)$(PREFIX)/bin, the systemd unit, criusctl's completions, a crictl
# config example, and /etc/crius/config.toml unless one exists. BIN_DIR other
# than target/release installs binaries already built there, unbuilt.
PREFIX ?= /usr/local
DESTDIR ?=
BIN_DIR ?= target/release
export PREFIX DESTDIR BIN_DIR

run:
	e2e/run-daemon.sh

test:
	e2e/run-tests.sh

# The VM lane: crius on nodes as users run them (systemd, cgroup v2, AppArmor;
# kernels 6.1 and 5.10), Debian guests under qemu (e2e/node/). GUESTS picks
# guests; CRITEST=/path/to/critest runs critest in each too.
GUESTS ?= debian12 kernel510
test-node:
	e2e/node/lane.sh $(GUESTS)

build:
	cargo build --release --bins

install: $(if $(filter target/release,$(BIN_DIR)),build)
	packaging/install.sh install

uninstall:
	packaging/install.sh uninstall

# The Debian package, built with cargo-deb, in target/debian/.
deb:
	packaging/deb.sh

# A first pod, offline: the harness registry, the demo image, and the example
# pod (manifests/pods/) on the criusd `make run` serves; Ctrl-C cleans up.
demo:
	e2e/demo.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean

# Benchmarks beside containerd (installs Debian's containerd).
bench:
	e2e/bench/pods.sh
	e2e/bench/network.sh
	e2e/bench/pull.sh
	e2e/bench/streaming.sh
	e2e/bench/metrics.sh
	e2e/bench/nri.sh

# Kubernetes' CRI conformance suite (critest from cri-tools v1.36.0, built
# outside the repository) against a private criusd: CRITEST=/path/to/critest,
# CRITEST_ARGS for critest (e.g. --ginkgo.focus=Image).
conformance:
	e2e/conformance/run.sh $(CRITEST_ARGS)

# NRI's sample plugins (built outside the repository from containerd/nri
# v0.12) against a private criusd, each checked for what its README says:
# NRI_PLUGINS=/path/to/dir with logger, device-injector, ulimit-adjuster,
# hook-injector, differ, template.
nri-check:
	NRI_PLUGINS="$(NRI_PLUGINS)" e2e/nri-check/run.sh
