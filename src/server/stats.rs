//! ContainerStats, PodSandboxStats and their List and Stream forms: hand-offs
//! to the runtime's measurements (`runtime/stats.rs`), off the async workers
//! because they read cgroup files, walk writable layers and ask netlink.

use super::{BoxStream, CriService, chunked, rpc};
use crate::container::ContainerError;
use crate::cri;
use tonic::{Response, Status};

pub async fn container(
    service: &CriService,
    id: String,
) -> Result<Response<cri::ContainerStatsResponse>, Status> {
    let name = id.clone();
    rpc("ContainerStats", &name, async {
        let stats = service.blocking(move |rt| rt.container_stats(&id)).await?;
        Ok(cri::ContainerStatsResponse { stats: Some(stats) })
    })
    .await
}

async fn containers(
    service: &CriService,
    filter: Option<cri::ContainerStatsFilter>,
) -> Result<Vec<cri::ContainerStats>, Status> {
    service
        .blocking(move |rt| Ok::<_, ContainerError>(rt.list_container_stats(filter.as_ref())))
        .await
}

pub async fn list_containers(
    service: &CriService,
    filter: Option<cri::ContainerStatsFilter>,
) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
    rpc("ListContainerStats", "", async {
        Ok(cri::ListContainerStatsResponse {
            stats: containers(service, filter).await?,
        })
    })
    .await
}

pub async fn stream_containers(
    service: &CriService,
    filter: Option<cri::ContainerStatsFilter>,
) -> Result<Response<BoxStream<cri::StreamContainerStatsResponse>>, Status> {
    rpc("StreamContainerStats", "", async {
        let stats = containers(service, filter).await?;
        Ok(chunked(&stats, |container_stats| {
            cri::StreamContainerStatsResponse { container_stats }
        }))
    })
    .await
}

pub async fn pod(
    service: &CriService,
    id: String,
) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
    let name = id.clone();
    rpc("PodSandboxStats", &name, async {
        let stats = service
            .blocking(move |rt| rt.pod_sandbox_stats(&id))
            .await?;
        Ok(cri::PodSandboxStatsResponse { stats: Some(stats) })
    })
    .await
}

async fn pods(
    service: &CriService,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Result<Vec<cri::PodSandboxStats>, Status> {
    service
        .blocking(move |rt| Ok::<_, ContainerError>(rt.list_pod_sandbox_stats(filter.as_ref())))
        .await
}

pub async fn list_pods(
    service: &CriService,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
    rpc("ListPodSandboxStats", "", async {
        Ok(cri::ListPodSandboxStatsResponse {
            stats: pods(service, filter).await?,
        })
    })
    .await
}

pub async fn stream_pods(
    service: &CriService,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Result<Response<BoxStream<cri::StreamPodSandboxStatsResponse>>, Status> {
    rpc("StreamPodSandboxStats", "", async {
        let stats = pods(service, filter).await?;
        Ok(chunked(&stats, |pod_sandbox_stats| {
            cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
        }))
    })
    .await
}
