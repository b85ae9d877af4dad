//! Metrics: the cAdvisor-named pod and container metrics of the CRI's
//! ListMetricDescriptors and ListPodSandboxMetrics (`cadvisor`: the
//! families; `cadvisor_samples`: turning one pass over a pod's cgroups,
//! processes, disk and interfaces into metrics).

pub mod cadvisor;
pub mod cadvisor_samples;
