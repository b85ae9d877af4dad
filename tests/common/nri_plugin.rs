//! A small NRI plugin for tests: the plugin side of the protocol, in this
//! process. It connects to a daemon's NRI socket (the multiplexed trunk:
//! it serves the Plugin service on conn 1 and calls the Runtime service on
//! conn 2), registers, and records every event it gets as "Event name"
//! (the pod's or container's name). What it answers is scripted.

#![allow(dead_code)]

use crius::nri::api::{self, nri_ttrpc};
use crius::nri::mux;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ttrpc::r#async::TtrpcContext;
use ttrpc::r#async::transport::{Listener, Socket};

pub type AdjusterFn =
    dyn Fn(&api::CreateContainerRequest) -> api::CreateContainerResponse + Send + Sync;
pub type UpdaterFn =
    dyn Fn(&api::UpdateContainerRequest) -> api::UpdateContainerResponse + Send + Sync;
pub type ValidatorFn = dyn Fn(&api::ValidateContainerAdjustmentRequest) -> api::ValidateContainerAdjustmentResponse
    + Send
    + Sync;

/// The pods and containers the runtime sent in Synchronize.
pub type Synced = Arc<Mutex<Option<(Vec<api::PodSandbox>, Vec<api::Container>)>>>;

/// How the plugin behaves.
#[derive(Clone, Default)]
pub struct Script {
    pub name: String,
    pub idx: String,
    /// Events subscribed to (0: all).
    pub events: i32,
    pub adjust: Option<Arc<AdjusterFn>>,
    pub update: Option<Arc<UpdaterFn>>,
    /// Answers ValidateContainerAdjustment (approves without it).
    pub validate: Option<Arc<ValidatorFn>>,
    /// Never answers this event ("CreateContainer", ...).
    pub hang_on: Option<String>,
    /// Answers this event with an error.
    pub fail_on: Option<String>,
    /// Answers Unimplemented to the RPCs v0.12 added, as a v0.11 plugin does.
    pub v011: bool,
}

impl Script {
    pub fn new(idx: &str, name: &str) -> Script {
        Script {
            name: name.into(),
            idx: idx.into(),
            ..Default::default()
        }
    }
}

struct Side {
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
    synced: Synced,
    /// What Synchronize messages with `more` brought so far.
    partial: Mutex<(Vec<api::PodSandbox>, Vec<api::Container>)>,
}

impl Side {
    async fn record(&self, event: &str, who: &str) -> ttrpc::Result<()> {
        self.log.lock().unwrap().push(format!("{event} {who}"));
        if self.script.hang_on.as_deref() == Some(event) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.script.fail_on.as_deref() == Some(event) {
            return Err(ttrpc::error::get_rpc_status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("test plugin refuses {event}"),
            ));
        }
        Ok(())
    }

    fn v011(&self) -> ttrpc::Result<()> {
        if self.script.v011 {
            return Err(ttrpc::error::get_rpc_status(
                ttrpc::Code::UNIMPLEMENTED,
                "method not implemented",
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl nri_ttrpc::Plugin for Side {
    async fn configure(
        &self,
        _: &TtrpcContext,
        req: api::ConfigureRequest,
    ) -> ttrpc::Result<api::ConfigureResponse> {
        self.log
            .lock()
            .unwrap()
            .push(format!("Configure {}", req.runtime_name));
        let mut r = api::ConfigureResponse::new();
        r.events = self.script.events;
        Ok(r)
    }

    async fn synchronize(
        &self,
        _: &TtrpcContext,
        req: api::SynchronizeRequest,
    ) -> ttrpc::Result<api::SynchronizeResponse> {
        self.log.lock().unwrap().push(format!(
            "Synchronize {} {}",
            req.pods.len(),
            req.containers.len()
        ));
        // A state split over several messages: `more` on all but the last,
        // answered with `more` and no updates until then.
        let mut partial = self.partial.lock().unwrap();
        partial.0.extend(req.pods);
        partial.1.extend(req.containers);
        let mut r = api::SynchronizeResponse::new();
        if req.more {
            r.more = true;
        } else {
            *self.synced.lock().unwrap() = Some(std::mem::take(&mut *partial));
        }
        Ok(r)
    }

    async fn validate_container_adjustment(
        &self,
        _: &TtrpcContext,
        req: api::ValidateContainerAdjustmentRequest,
    ) -> ttrpc::Result<api::ValidateContainerAdjustmentResponse> {
        self.record("ValidateContainerAdjustment", &req.container.name)
            .await?;
        Ok(match &self.script.validate {
            Some(validate) => validate(&req),
            None => api::ValidateContainerAdjustmentResponse::new(),
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: api::Empty) -> ttrpc::Result<api::Empty> {
        Ok(api::Empty::new())
    }

    async fn run_pod_sandbox(
        &self,
        _: &TtrpcContext,
        req: api::RunPodSandboxRequest,
    ) -> ttrpc::Result<api::RunPodSandboxResponse> {
        self.v011()?;
        self.record("RunPodSandbox", &req.pod.name).await?;
        Ok(api::RunPodSandboxResponse::new())
    }
    async fn update_pod_sandbox(
        &self,
        _: &TtrpcContext,
        req: api::UpdatePodSandboxRequest,
    ) -> ttrpc::Result<api::UpdatePodSandboxResponse> {
        let cpu = req.linux_resources.cpu.shares.value;
        self.record(&format!("UpdatePodSandbox(shares={cpu})"), &req.pod.name)
            .await?;
        Ok(api::UpdatePodSandboxResponse::new())
    }

    async fn post_update_pod_sandbox(
        &self,
        _: &TtrpcContext,
        req: api::PostUpdatePodSandboxRequest,
    ) -> ttrpc::Result<api::PostUpdatePodSandboxResponse> {
        self.v011()?;
        self.record("PostUpdatePodSandbox", &req.pod.name).await?;
        Ok(api::PostUpdatePodSandboxResponse::new())
    }

    async fn stop_pod_sandbox(
        &self,
        _: &TtrpcContext,
        req: api::StopPodSandboxRequest,
    ) -> ttrpc::Result<api::StopPodSandboxResponse> {
        self.v011()?;
        self.record("StopPodSandbox", &req.pod.name).await?;
        Ok(api::StopPodSandboxResponse::new())
    }
    async fn remove_pod_sandbox(
        &self,
        _: &TtrpcContext,
        req: api::RemovePodSandboxRequest,
    ) -> ttrpc::Result<api::RemovePodSandboxResponse> {
        self.v011()?;
        self.record("RemovePodSandbox", &req.pod.name).await?;
        Ok(api::RemovePodSandboxResponse::new())
    }
    async fn post_create_container(
        &self,
        _: &TtrpcContext,
        req: api::PostCreateContainerRequest,
    ) -> ttrpc::Result<api::PostCreateContainerResponse> {
        self.v011()?;
        self.record("PostCreateContainer", &req.container.name)
            .await?;
        Ok(api::PostCreateContainerResponse::new())
    }
    async fn start_container(
        &self,
        _: &TtrpcContext,
        req: api::StartContainerRequest,
    ) -> ttrpc::Result<api::StartContainerResponse> {
        self.v011()?;
        self.record("StartContainer", &req.container.name).await?;
        Ok(api::StartContainerResponse::new())
    }
    async fn post_start_container(
        &self,
        _: &TtrpcContext,
        req: api::PostStartContainerRequest,
    ) -> ttrpc::Result<api::PostStartContainerResponse> {
        self.v011()?;
        self.record("PostStartContainer", &req.container.name)
            .await?;
        Ok(api::PostStartContainerResponse::new())
    }
    async fn post_update_container(
        &self,
        _: &TtrpcContext,
        req: api::PostUpdateContainerRequest,
    ) -> ttrpc::Result<api::PostUpdateContainerResponse> {
        self.v011()?;
        self.record("PostUpdateContainer", &req.container.name)
            .await?;
        Ok(api::PostUpdateContainerResponse::new())
    }
    async fn remove_container(
        &self,
        _: &TtrpcContext,
        req: api::RemoveContainerRequest,
    ) -> ttrpc::Result<api::RemoveContainerResponse> {
        self.v011()?;
        self.record("RemoveContainer", &req.container.name).await?;
        Ok(api::RemoveContainerResponse::new())
    }

    async fn create_container(
        &self,
        _: &TtrpcContext,
        req: api::CreateContainerRequest,
    ) -> ttrpc::Result<api::CreateContainerResponse> {
        self.record("CreateContainer", &req.container.name).await?;
        Ok(match &self.script.adjust {
            Some(adjust) => adjust(&req),
            None => api::CreateContainerResponse::new(),
        })
    }

    async fn update_container(
        &self,
        _: &TtrpcContext,
        req: api::UpdateContainerRequest,
    ) -> ttrpc::Result<api::UpdateContainerResponse> {
        self.record("UpdateContainer", &req.container.name).await?;
        Ok(match &self.script.update {
            Some(update) => update(&req),
            None => api::UpdateContainerResponse::new(),
        })
    }

    async fn stop_container(
        &self,
        _: &TtrpcContext,
        req: api::StopContainerRequest,
    ) -> ttrpc::Result<api::StopContainerResponse> {
        self.record("StopContainer", &req.container.name).await?;
        Ok(api::StopContainerResponse::new())
    }

    async fn state_change(
        &self,
        _: &TtrpcContext,
        req: api::StateChangeEvent,
    ) -> ttrpc::Result<api::Empty> {
        let event = format!("{:?}", req.event.enum_value_or_default());
        let who = if req.container.is_some() {
            req.container.name.clone()
        } else {
            req.pod.name.clone()
        };
        self.record(&format!("StateChange:{event}"), &who).await?;
        Ok(api::Empty::new())
    }
}

pub struct TestPlugin {
    pub log: Arc<Mutex<Vec<String>>>,
    pub synced: Synced,
    pub runtime: nri_ttrpc::RuntimeClient,
    trunk: mux::Trunk,
    _server: ttrpc::r#async::Server,
}

impl TestPlugin {
    /// Connects to `socket`, registers, and waits until the runtime has
    /// synchronized it (all of its Synchronize messages).
    pub async fn connect(socket: &Path, script: Script) -> TestPlugin {
        let plugin = TestPlugin::connect_only(socket, script).await;
        let deadline = Instant::now() + super::patience(Duration::from_secs(10));
        while plugin.synced.lock().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "not synchronized; got {:?}",
                plugin.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        plugin
    }

    /// Connects and registers without waiting.
    pub async fn connect_only(socket: &Path, script: Script) -> TestPlugin {
        // criusd binds the NRI socket just before it serves the CRI.
        let deadline = Instant::now() + super::patience(Duration::from_secs(10));
        let stream = loop {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => {
                    panic!("NRI socket {}: {e}", socket.display())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (trunk, [plugin_conn, runtime_conn]) = mux::multiplex(
            stream,
            [mux::PLUGIN_SERVICE_CONN, mux::RUNTIME_SERVICE_CONN],
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let synced = Arc::new(Mutex::new(None));
        let (name, idx) = (script.name.clone(), script.idx.clone());
        let side = Arc::new(Side {
            script,
            log: log.clone(),
            synced: synced.clone(),
            partial: Mutex::default(),
        });
        let one =
            futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(plugin_conn)));
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(Listener::new(one))
            .register_service(nri_ttrpc::create_plugin(side));
        server.start().await.unwrap();
        let runtime =
            nri_ttrpc::RuntimeClient::new(ttrpc::r#async::Client::new(Socket::new(runtime_conn)));
        let mut req = api::RegisterPluginRequest::new();
        req.plugin_name = name;
        req.plugin_idx = idx;
        req.NRI_version = "test".into();
        runtime
            .register_plugin(ttrpc::context::with_duration(Duration::from_secs(5)), &req)
            .await
            .expect("registration");
        TestPlugin {
            log,
            synced,
            runtime,
            trunk,
            _server: server,
        }
    }

    pub fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until an event starting with `prefix` is logged.
    pub async fn wait_for(&self, prefix: &str, timeout: Duration) {
        let deadline = Instant::now() + super::patience(timeout);
        while !self.events().iter().any(|e| e.starts_with(prefix)) {
            assert!(
                Instant::now() < deadline,
                "no {prefix} event; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the runtime has closed the connection.
    pub async fn disconnected_within(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.trunk.closed())
            .await
            .is_ok()
    }
}
