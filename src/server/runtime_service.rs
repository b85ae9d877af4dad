//! RuntimeService: one method per CRI call, each a thin hand-off to the domain
//! modules. Calls crius does not implement yet answer `Unimplemented` naming
//! the RPC, never a fake success.

use super::{BoxStream, CriService, containers, events, pod_metrics, rpc, stats, to_status};
use crate::cri::{self, runtime_service_server::RuntimeService};
use crate::runtime::PodError;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl RuntimeService for CriService {
    type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;
    type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;
    type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = BoxStream<cri::StreamPodSandboxMetricsResponse>;

    async fn version(
        &self,
        _: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        rpc("Version", "", async { Ok(self.runtime.version()) }).await
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let verbose = request.into_inner().verbose;
        rpc("Status", "", self.blocking(move |rt| rt.status(verbose))).await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let handler = request.runtime_handler;
        rpc(
            "RunPodSandbox",
            &name,
            self.blocking(move |rt| {
                let record = rt.run_pod_sandbox(config, &handler)?;
                tracing::info!(id = %record.id, name = %record.name, "pod sandbox ready");
                Ok::<_, PodError>(cri::RunPodSandboxResponse {
                    pod_sandbox_id: record.id,
                })
            }),
        )
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        rpc(
            "StopPodSandbox",
            &id.clone(),
            self.blocking(move |rt| {
                rt.stop_pod_sandbox(&id)
                    .map(|()| cri::StopPodSandboxResponse {})
            }),
        )
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        rpc(
            "RemovePodSandbox",
            &id.clone(),
            self.blocking(move |rt| {
                rt.remove_pod_sandbox(&id)
                    .map(|()| cri::RemovePodSandboxResponse {})
            }),
        )
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        rpc("PodSandboxStatus", &request.pod_sandbox_id, async {
            let record = self
                .runtime
                .sandboxes
                .get(&request.pod_sandbox_id)
                .map_err(to_status)?;
            let (status, mut info) = record.status(request.verbose);
            if request.verbose
                && let (Some(net), Some(netns)) =
                    (record.network.clone(), record.namespaces.network.clone())
                && !net.detached
                && netns.exists()
            {
                let id = record.id.clone();
                let check = self
                    .blocking(move |_| {
                        Ok::<_, PodError>(crate::network::pod::check(&net, &id, &netns))
                    })
                    .await?;
                info.insert("network_check".into(), check);
            }
            let filter = cri::ContainerFilter {
                pod_sandbox_id: record.id.clone(),
                ..Default::default()
            };
            let containers_statuses = self
                .blocking(move |rt| {
                    Ok::<_, PodError>(
                        rt.containers
                            .list(Some(&filter))
                            .iter()
                            .map(|c| c.status(false).0)
                            .collect(),
                    )
                })
                .await?;
            Ok(cri::PodSandboxStatusResponse {
                status: Some(status),
                info,
                containers_statuses,
                timestamp: crate::time::now_nanos(),
            })
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        rpc("ListPodSandbox", "", async {
            let items = self
                .runtime
                .sandboxes
                .list(filter.as_ref())
                .iter()
                .map(|r| r.to_cri())
                .collect();
            Ok(cri::ListPodSandboxResponse { items })
        })
        .await
    }

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let filter = request.into_inner().filter;
        rpc("StreamPodSandboxes", "", async {
            let items: Vec<cri::PodSandbox> = self
                .runtime
                .sandboxes
                .list(filter.as_ref())
                .iter()
                .map(|r| r.to_cri())
                .collect();
            Ok(super::chunked(&items, |pod_sandboxes| {
                cri::StreamPodSandboxesResponse { pod_sandboxes }
            }))
        })
        .await
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        rpc("RuntimeConfig", "", async {
            Ok(self.runtime.runtime_config())
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let pod_cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        let update = self.blocking(move |rt| rt.update_runtime_config(&pod_cidr));
        rpc("UpdateRuntimeConfig", "", async {
            update.await?;
            Ok(cri::UpdateRuntimeConfigResponse {})
        })
        .await
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        containers::create(self, request.into_inner()).await
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        containers::start(self, request.into_inner().container_id).await
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        containers::stop(self, request.into_inner()).await
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        containers::remove(self, request.into_inner().container_id).await
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        containers::list(self, request.into_inner().filter).await
    }

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        containers::stream(self, request.into_inner().filter).await
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        containers::status(self, request.into_inner()).await
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        containers::update_resources(self, request.into_inner()).await
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        containers::reopen_log(self, request.into_inner().container_id).await
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        containers::exec_sync(self, request.into_inner()).await
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let request = request.into_inner();
        let id = request.container_id.clone();
        rpc("Exec", &id, async move {
            self.blocking(move |rt| rt.streaming.exec_url(rt, request))
                .await
                .map(|url| cri::ExecResponse { url })
        })
        .await
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let request = request.into_inner();
        let id = request.container_id.clone();
        rpc("Attach", &id, async move {
            self.blocking(move |rt| rt.streaming.attach_url(rt, request))
                .await
                .map(|url| cri::AttachResponse { url })
        })
        .await
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let request = request.into_inner();
        let id = request.pod_sandbox_id.clone();
        rpc("PortForward", &id, async move {
            self.blocking(move |rt| rt.streaming.port_forward_url(rt, request))
                .await
                .map(|url| cri::PortForwardResponse { url })
        })
        .await
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        stats::container(self, request.into_inner().container_id).await
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        stats::list_containers(self, request.into_inner().filter).await
    }

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        stats::stream_containers(self, request.into_inner().filter).await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        stats::pod(self, request.into_inner().pod_sandbox_id).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        stats::list_pods(self, request.into_inner().filter).await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        stats::stream_pods(self, request.into_inner().filter).await
    }

    async fn checkpoint_container(
        &self,
        request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        containers::checkpoint(self, request.into_inner()).await
    }

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        rpc("GetContainerEvents", "", async { Ok(events::follow(self)) }).await
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        pod_metrics::descriptors().await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        pod_metrics::list(self).await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        pod_metrics::stream(self).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        let request = request.into_inner();
        let id = request.pod_sandbox_id.clone();
        rpc(
            "UpdatePodSandboxResources",
            &id,
            self.blocking(move |rt| {
                rt.update_pod_sandbox_resources(
                    &request.pod_sandbox_id,
                    request.overhead,
                    request.resources,
                )?;
                Ok::<_, crate::runtime::PodError>(cri::UpdatePodSandboxResourcesResponse {})
            }),
        )
        .await
    }
}
