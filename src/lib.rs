//! crius: a Kubernetes container runtime serving the CRI (runtime.v1).
//!
//! Domain modules own their data and cleanup and know nothing of gRPC; the
//! `server` module is the thin gRPC layer on top. See ARCHITECTURE.md.

pub mod cgroups;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod error;
pub mod events;
pub mod handlers;
pub mod idmap;
pub mod ids;
pub mod image;
pub mod metrics;
pub mod network;
pub mod nri;
pub mod read_only_exe;
pub mod resolve;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod stats;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod time;

/// The runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "crius";
/// The CRI API version served.
pub const CRI_API_VERSION: &str = "v1";
/// The commit criusd was built from (build.rs: short hash, "-dirty" when the
/// sources differed, "unknown" outside a git checkout).
pub const GIT_REVISION: &str = env!("CRIUS_GIT_REVISION");
/// What every crius binary's `--version` prints after its name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CRIUS_GIT_REVISION"),
    ")"
);
