//! The container RPCs of RuntimeService, each a thin hand-off to
//! `Runtime`/`Containers`. `runtime_service.rs` forwards to these.

use super::{CriService, rpc, to_status};
use crate::container::{self, ContainerError, ContainerRecord};
use crate::cri;
use std::time::{Duration, Instant};
use tonic::{Response, Status};

pub async fn create(
    service: &CriService,
    request: cri::CreateContainerRequest,
) -> Result<Response<cri::CreateContainerResponse>, Status> {
    let config = request.config.unwrap_or_default();
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let sandbox_id = request.pod_sandbox_id;
    rpc(
        "CreateContainer",
        &name,
        service.blocking(move |rt| {
            let record = rt.create_container(&sandbox_id, config)?;
            tracing::info!(id = %record.id, name = %record.name, "container created");
            Ok::<_, crate::runtime::PodError>(cri::CreateContainerResponse {
                container_id: record.id,
            })
        }),
    )
    .await
}

pub async fn start(
    service: &CriService,
    id: String,
) -> Result<Response<cri::StartContainerResponse>, Status> {
    rpc(
        "StartContainer",
        &id.clone(),
        service.blocking(move |rt| {
            rt.start_container(&id)
                .map(|()| cri::StartContainerResponse {})
        }),
    )
    .await
}

pub async fn stop(
    service: &CriService,
    request: cri::StopContainerRequest,
) -> Result<Response<cri::StopContainerResponse>, Status> {
    let id = request.container_id;
    rpc(
        "StopContainer",
        &id.clone(),
        service.blocking(move |rt| {
            rt.stop_container(&id, request.timeout)
                .map(|()| cri::StopContainerResponse {})
        }),
    )
    .await
}

pub async fn remove(
    service: &CriService,
    id: String,
) -> Result<Response<cri::RemoveContainerResponse>, Status> {
    rpc(
        "RemoveContainer",
        &id.clone(),
        service.blocking(move |rt| {
            rt.remove_container(&id)
                .map(|()| cri::RemoveContainerResponse {})
        }),
    )
    .await
}

/// The containers matching `filter`, as CRI summaries.
pub async fn listed(
    service: &CriService,
    filter: Option<cri::ContainerFilter>,
) -> Result<Vec<cri::Container>, Status> {
    service
        .blocking(move |rt| {
            Ok::<_, ContainerError>(
                rt.containers
                    .list(filter.as_ref())
                    .iter()
                    .map(ContainerRecord::to_cri)
                    .collect(),
            )
        })
        .await
}

pub async fn list(
    service: &CriService,
    filter: Option<cri::ContainerFilter>,
) -> Result<Response<cri::ListContainersResponse>, Status> {
    rpc("ListContainers", "", async {
        Ok(cri::ListContainersResponse {
            containers: listed(service, filter).await?,
        })
    })
    .await
}

pub async fn stream(
    service: &CriService,
    filter: Option<cri::ContainerFilter>,
) -> Result<Response<super::BoxStream<cri::StreamContainersResponse>>, Status> {
    rpc("StreamContainers", "", async {
        let items = listed(service, filter).await?;
        Ok(super::chunked(&items, |containers| {
            cri::StreamContainersResponse { containers }
        }))
    })
    .await
}

pub async fn status(
    service: &CriService,
    request: cri::ContainerStatusRequest,
) -> Result<Response<cri::ContainerStatusResponse>, Status> {
    let id = request.container_id;
    let verbose = request.verbose;
    rpc(
        "ContainerStatus",
        &id.clone(),
        service.blocking(move |rt| {
            let (status, info) = rt.containers.observe(&id)?.status(verbose);
            Ok::<_, ContainerError>(cri::ContainerStatusResponse {
                status: Some(status),
                info,
            })
        }),
    )
    .await
}

pub async fn update_resources(
    service: &CriService,
    request: cri::UpdateContainerResourcesRequest,
) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
    let id = request.container_id;
    rpc(
        "UpdateContainerResources",
        &id.clone(),
        service.blocking(move |rt| {
            let linux = request.linux.ok_or_else(|| {
                ContainerError::Invalid("linux resources are required on Linux".into())
            })?;
            rt.update_container_resources(&id, linux)
                .map(|()| cri::UpdateContainerResourcesResponse {})
        }),
    )
    .await
}

pub async fn checkpoint(
    service: &CriService,
    request: cri::CheckpointContainerRequest,
) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
    let id = request.container_id;
    // The dump stops itself by the request's timeout or the call's
    // deadline, whichever comes first, so nothing runs on unanswered.
    let timeout = match request.timeout {
        t if t > 0 => Duration::from_secs(t as u64),
        _ => crate::checkpoint::DEFAULT_TIMEOUT,
    };
    let mut deadline = Instant::now() + timeout;
    if let Some(call) = super::transport::deadline() {
        deadline = deadline.min(call);
    }
    rpc(
        "CheckpointContainer",
        &id.clone(),
        service.blocking(move |rt| {
            rt.containers
                .checkpoint(&id, &request.location, deadline)
                .map(|()| cri::CheckpointContainerResponse {})
        }),
    )
    .await
}

pub async fn reopen_log(
    service: &CriService,
    id: String,
) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
    rpc(
        "ReopenContainerLog",
        &id.clone(),
        service.blocking(move |rt| {
            rt.containers
                .reopen_log(&id)
                .map(|()| cri::ReopenContainerLogResponse {})
        }),
    )
    .await
}

pub async fn exec_sync(
    service: &CriService,
    request: cri::ExecSyncRequest,
) -> Result<Response<cri::ExecSyncResponse>, Status> {
    // The timeout counts from here: the whole call must fit in it.
    let since = tokio::time::Instant::now();
    let id = request.container_id.clone();
    rpc("ExecSync", &id.clone(), async move {
        let timeout = (request.timeout > 0).then(|| Duration::from_secs(request.timeout as u64));
        let lookup = service.blocking(move |rt| {
            let record = rt.containers.observe(&id)?;
            let enters_itself = rt.containers.enters_itself(&record);
            Ok::<_, ContainerError>((record, enters_itself))
        });
        let (record, enters_itself) = match timeout {
            Some(limit) => tokio::time::timeout_at(since + limit, lookup)
                .await
                .map_err(|_| {
                    to_status(container::exec::timed_out(
                        &request.container_id,
                        &request.cmd,
                        limit,
                    ))
                })??,
            None => lookup.await?,
        };
        let output =
            container::exec::exec_sync(&record, request.cmd, timeout, since, enters_itself)
                .await
                .map_err(to_status)?;
        Ok(cri::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        })
    })
    .await
}
