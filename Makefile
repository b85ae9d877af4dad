# The two commands: `make run` (the daemon, built-in defaults) and `make test`
# (everything). Both install their Debian packages themselves.

.PHONY: run test build lint clean bench conformance

run:
	e2e/run-daemon.sh

test:
	e2e/run-tests.sh

build:
	cargo build --release --bins

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

# Kubernetes' CRI conformance suite (critest from cri-tools v1.36.0, built
# outside the repository) against a private criusd: CRITEST=/path/to/critest,
# CRITEST_ARGS for critest (e.g. --ginkgo.focus=Image).
conformance:
	e2e/conformance/run.sh $(CRITEST_ARGS)
