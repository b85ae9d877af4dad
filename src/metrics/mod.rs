//! Metrics, for two audiences.
//!
//! kubelet's, through the CRI's ListMetricDescriptors and
//! ListPodSandboxMetrics: the cAdvisor-named pod and container metrics
//! (`cadvisor`: the families; `cadvisor_samples`: turning one pass over a
//! pod's cgroups, processes, disk and interfaces into metrics).
//!
//! Operators', on a Prometheus text endpoint: what criusd measures about its
//! own work (`daemon`: RPCs, pulls, pod start phases, CNI plugins, the exit
//! watcher, live objects, build info, and their encoding; `endpoint`: the
//! HTTP/1.1 listener serving `/metrics`, and a small client for criusctl and
//! tests).

pub mod cadvisor;
pub mod cadvisor_samples;
pub mod daemon;
pub mod endpoint;
