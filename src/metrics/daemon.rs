//! What criusd measures about its own work, in Prometheus families.
//!
//! One process-wide set of families (a `LazyLock`), not a handle passed
//! around: the places that measure sit in domain modules reached from many
//! threads (the RPC wrapper, pulls, sandbox and container creation, CNI
//! plugin runs, the exit watcher), and threading a handle through all of them
//! would add a parameter to functions that otherwise know nothing of
//! metrics. There is one daemon per process, as there is one tracing
//! subscriber. Domain modules call the plain functions below with names and
//! durations and see no Prometheus type. Recording is always on (a few
//! atomic adds); `[metrics] address` only decides whether it is served.
//!
//! Live objects (pods, containers, shims) are counted from the runtime's
//! records when scraped ([`set_live_source`]), never kept by inc/dec
//! bookkeeping that a crash or a recovery would leave wrong.

use crate::error::ErrorKind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

/// The `Content-Type` of what [`encode`] writes (text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric family criusd exports, as named in the text (counters with
/// their `_total`); the dashboard's queries may use only these.
pub const FAMILIES: &[&str] = &[
    "crius_build_info",
    "crius_rpc_requests_total",
    "crius_rpc_duration_seconds",
    "crius_image_pulls_total",
    "crius_image_pull_bytes_total",
    "crius_image_pull_duration_seconds",
    "crius_pod_start_phase_duration_seconds",
    "crius_cni_plugin_duration_seconds",
    "crius_exit_watcher_lag_seconds",
    "crius_pods",
    "crius_containers",
    "crius_shims",
];

/// A step of starting a pod's sandbox or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating and pinning the sandbox's namespaces (crius-pinns).
    Namespaces,
    /// Attaching the pod to its network (CNI ADD, or the built-in bridge).
    Network,
    /// Mounting a container's rootfs overlay.
    Rootfs,
    /// The shim running `<runtime> create` until it reports the container
    /// created.
    RuncCreate,
    /// `<runtime> start`.
    Start,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Namespaces => "namespaces",
            Phase::Network => "network",
            Phase::Rootfs => "rootfs",
            Phase::RuncCreate => "runc_create",
            Phase::Start => "start",
        }
    }
}

/// How one CNI plugin run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginOutcome {
    Ok,
    Error,
    /// Killed after `network.cni_plugin_timeout_seconds`.
    Timeout,
}

/// What live objects there are, counted when scraped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Pod sandboxes by state ("ready", "notready").
    pub pods: Vec<(&'static str, u64)>,
    /// Containers by state ("created", "running", "exited").
    pub containers: Vec<(&'static str, u64)>,
    /// Shim processes alive.
    pub shims: u64,
}

type LiveSource = Box<dyn Fn() -> Option<LiveCounts> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    command: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Histograms<RpcLabels>,
    pulls: Family<ResultLabels, Counter>,
    pull_bytes: Family<ResultLabels, Counter>,
    pull_duration: Histograms<ResultLabels>,
    phases: Histograms<PhaseLabels>,
    cni_plugins: Histograms<PluginLabels>,
    exit_lag: Histogram,
    live: Arc<Live>,
}

// Buckets: from the fastest expected case to well past the slow one.
fn rpc_buckets() -> Histogram {
    // 0.5 ms .. 65 s: Version to a large pull.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}
fn pull_buckets() -> Histogram {
    // 50 ms .. 6.8 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}
fn phase_buckets() -> Histogram {
    // 1 ms .. 16 s: a built-in network attach to a slow CNI chain.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("crius"),
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(rpc_buckets),
            pulls: Family::default(),
            pull_bytes: Family::default(),
            pull_duration: Family::new_with_constructor(pull_buckets),
            phases: Family::new_with_constructor(phase_buckets),
            cni_plugins: Family::new_with_constructor(phase_buckets),
            // 0.1 ms .. 3.3 s.
            exit_lag: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            live: Arc::new(Live::default()),
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                // Set by the build where the source is a git checkout.
                revision: option_env!("CRIUS_GIT_REVISION").unwrap_or("unknown"),
            })
            .set(1);
        let r = &mut m.registry;
        r.register(
            "build_info",
            "criusd's version and source revision (always 1)",
            build,
        );
        r.register(
            "rpc_requests",
            "CRI calls by method and gRPC code (streaming calls when they open)",
            m.rpc_requests.clone(),
        );
        r.register_with_unit(
            "rpc_duration",
            "How long CRI calls took, by method and gRPC code",
            Unit::Seconds,
            m.rpc_duration.clone(),
        );
        r.register(
            "image_pulls",
            "Image pulls by result (ok, or the error's kind)",
            m.pulls.clone(),
        );
        r.register(
            "image_pull_bytes",
            "Compressed layer bytes downloaded by pulls, by result",
            m.pull_bytes.clone(),
        );
        r.register_with_unit(
            "image_pull_duration",
            "How long image pulls took, by result",
            Unit::Seconds,
            m.pull_duration.clone(),
        );
        r.register_with_unit(
            "pod_start_phase_duration",
            "How long each successful step of starting pods and containers took (namespaces, network, rootfs, runc_create, start)",
            Unit::Seconds,
            m.phases.clone(),
        );
        r.register_with_unit(
            "cni_plugin_duration",
            "How long CNI plugin runs took, by plugin type, command and result (ok, error, timeout)",
            Unit::Seconds,
            m.cni_plugins.clone(),
        );
        r.register_with_unit(
            "exit_watcher_lag",
            "Time from a shim writing a container's exit record to the exit watcher having it recorded",
            Unit::Seconds,
            m.exit_lag.clone(),
        );
        r.register_collector(Box::new(m.live.clone()));
        m
    }
}

/// One CRI call ended with `code` (a gRPC code's name, e.g. "OK").
pub fn rpc(method: &'static str, code: &'static str, elapsed: Duration) {
    let labels = RpcLabels { method, code };
    METRICS.rpc_requests.get_or_create(&labels).inc();
    METRICS
        .rpc_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// One image pull ended (`error`: its kind when it failed) after
/// downloading `bytes` of compressed layers.
pub fn image_pull(error: Option<ErrorKind>, bytes: u64, elapsed: Duration) {
    let labels = ResultLabels {
        result: result_name(error),
    };
    METRICS.pulls.get_or_create(&labels).inc();
    METRICS.pull_bytes.get_or_create(&labels).inc_by(bytes);
    METRICS
        .pull_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// A step of starting a pod or a container succeeded after `elapsed`.
pub fn pod_phase(phase: Phase, elapsed: Duration) {
    METRICS
        .phases
        .get_or_create(&PhaseLabels {
            phase: phase.name(),
        })
        .observe(elapsed.as_secs_f64());
}

/// One CNI plugin (its `type`) ran `command` (ADD, DEL, CHECK, ...).
pub fn cni_plugin(plugin: &str, command: &'static str, outcome: PluginOutcome, elapsed: Duration) {
    let result = match outcome {
        PluginOutcome::Ok => "ok",
        PluginOutcome::Error => "error",
        PluginOutcome::Timeout => "timeout",
    };
    METRICS
        .cni_plugins
        .get_or_create(&PluginLabels {
            plugin: plugin.to_string(),
            command,
            result,
        })
        .observe(elapsed.as_secs_f64());
}

/// criusd recorded a container's exit `lag` after its shim wrote it.
pub fn exit_noticed(lag: Duration) {
    METRICS.exit_lag.observe(lag.as_secs_f64());
}

/// Where scrapes count live objects (set once, by the daemon). Until then,
/// or once `source` answers `None`, the live families are left out rather
/// than reported as zero.
pub fn set_live_source(source: impl Fn() -> Option<LiveCounts> + Send + Sync + 'static) {
    let _ = METRICS.live.source.set(Box::new(source));
}

/// Everything, in the Prometheus text format. Counting live objects reads
/// the runtime's records and shims' files: call it off the async workers.
pub fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String does not fail");
    text
}

/// The `result` label of a pull: "ok", or the error's kind.
fn result_name(error: Option<ErrorKind>) -> &'static str {
    match error {
        None => "ok",
        Some(ErrorKind::InvalidArgument) => "invalid_argument",
        Some(ErrorKind::NotFound) => "not_found",
        Some(ErrorKind::AlreadyExists) => "already_exists",
        Some(ErrorKind::FailedPrecondition) => "failed_precondition",
        Some(ErrorKind::DeadlineExceeded) => "deadline_exceeded",
        Some(ErrorKind::Unauthenticated) => "unauthenticated",
        Some(ErrorKind::PermissionDenied) => "permission_denied",
        Some(ErrorKind::Unavailable) => "unavailable",
        Some(ErrorKind::Unimplemented) => "unimplemented",
        Some(ErrorKind::Internal) => "internal",
    }
}

/// Counts live objects on each scrape.
#[derive(Default)]
struct Live {
    source: OnceLock<LiveSource>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(counts) = self.source.get().and_then(|count| count()) else {
            return Ok(());
        };
        let by_state = |states: &[(&'static str, u64)]| {
            let family = Family::<StateLabels, Gauge>::default();
            for &(state, n) in states {
                family.get_or_create(&StateLabels { state }).set(n as i64);
            }
            family
        };
        let pods = by_state(&counts.pods);
        pods.encode(encoder.encode_descriptor(
            "pods",
            "Pod sandboxes by state",
            None,
            pods.metric_type(),
        )?)?;
        let containers = by_state(&counts.containers);
        containers.encode(encoder.encode_descriptor(
            "containers",
            "Containers by state",
            None,
            containers.metric_type(),
        )?)?;
        let shims = Gauge::<i64>::default();
        shims.set(counts.shims as i64);
        shims.encode(encoder.encode_descriptor(
            "shims",
            "crius-shim processes alive",
            None,
            shims.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;
