//! ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics:
//! hand-offs to the metric catalogue and the runtime's measurements
//! (`runtime/pod_metrics.rs`), off the async workers because they read
//! cgroup files, walk writable layers and ask netlink.
//!
//! StreamPodSandboxMetrics answers like containerd: the current metrics of
//! every pod once, in messages of `STREAM_CHUNK` pods, then the stream ends
//! (kubelet does not call it yet; a client that wants more calls again).

use super::{BoxStream, CriService, chunked, rpc};
use crate::container::ContainerError;
use crate::cri;
use crate::metrics::cadvisor;
use tonic::{Response, Status};

pub async fn descriptors() -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
    rpc("ListMetricDescriptors", "", async {
        Ok(cri::ListMetricDescriptorsResponse {
            descriptors: cadvisor::descriptors(),
        })
    })
    .await
}

async fn pods(service: &CriService) -> Result<Vec<cri::PodSandboxMetrics>, Status> {
    service
        .blocking(|rt| Ok::<_, ContainerError>(rt.list_pod_sandbox_metrics()))
        .await
}

pub async fn list(
    service: &CriService,
) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
    rpc("ListPodSandboxMetrics", "", async {
        Ok(cri::ListPodSandboxMetricsResponse {
            pod_metrics: pods(service).await?,
        })
    })
    .await
}

pub async fn stream(
    service: &CriService,
) -> Result<Response<BoxStream<cri::StreamPodSandboxMetricsResponse>>, Status> {
    rpc("StreamPodSandboxMetrics", "", async {
        let metrics = pods(service).await?;
        Ok(chunked(&metrics, |pod_sandbox_metrics| {
            cri::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        }))
    })
    .await
}
