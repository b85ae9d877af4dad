//! One plugin's connection: the multiplexed socket, a ttrpc client of the
//! plugin's Plugin service, a ttrpc server of our Runtime service for it,
//! registration, Configure, Synchronize, and one call per event, each under
//! the request timeout.
//!
//! As NRI's adaptation does: a plugin that times out or whose connection
//! breaks is closed and the CRI call goes on without it; a plugin that
//! answers with an error fails the call. Plugins built before v0.12 answer
//! Unimplemented to the dedicated pod and post-event RPCs and get those
//! events through StateChange instead.

use super::api::{self, nri_ttrpc};
use super::mux::{self, Trunk};
use protobuf::{EnumOrUnknown, Message, MessageField};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use ttrpc::r#async::transport::{Listener, Socket};

/// The NRI version crius speaks, told to plugins in Configure.
pub const NRI_VERSION: &str = "v0.12.2";

/// What a plugin's events and timeouts need from the runtime; built once.
#[derive(Clone)]
pub struct Settings {
    pub registration_timeout: Duration,
    pub request_timeout: Duration,
    pub runtime_version: String,
}

/// Why a plugin could not be connected, or why it failed a request.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: {message}")]
    Failed { plugin: String, message: String },
}

/// An error status a plugin answered.
struct Refusal {
    code: ttrpc::Code,
    message: String,
}

/// The bits of `ConfigureResponse.events`: one per `api::Event`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventMask(i32);

impl EventMask {
    /// Every event a plugin may subscribe to (RUN_POD_SANDBOX ..
    /// VALIDATE_CONTAINER_ADJUSTMENT); bit n is event n+1.
    const VALID: i32 = (1 << (api::Event::LAST as i32 - 1)) - 1;

    pub fn has(self, event: api::Event) -> bool {
        let bit = event as i32 - 1;
        bit >= 0 && self.0 & (1 << bit) != 0
    }
}

/// How the plugin came to us: started from the plugin dir, or connected to
/// the socket by someone else.
pub enum Origin {
    Launched {
        idx: String,
        base: String,
        config: String,
        child: Box<tokio::process::Child>,
    },
    External,
}

pub struct Plugin {
    pub idx: String,
    pub base: String,
    events: EventMask,
    client: nri_ttrpc::PluginClient,
    trunk: Trunk,
    closed: AtomicBool,
    /// Plugins that answered Unimplemented to a dedicated event RPC.
    state_change_only: AtomicBool,
    request_timeout: Duration,
    /// Keeps our Runtime service for the plugin alive (dropping it
    /// disconnects). In a mutex only to make `Plugin` Sync: its listener
    /// is a stream that is not.
    _server: Mutex<ttrpc::r#async::Server>,
    child: Mutex<Option<Box<tokio::process::Child>>>,
}

/// Our side of the plugin's Runtime service: registration, and the
/// plugin's unsolicited container updates.
struct RuntimeSide {
    registered: Mutex<Option<oneshot::Sender<(String, String)>>>,
    updates: Arc<dyn Fn(api::UpdateContainersRequest) -> UpdateFuture + Send + Sync>,
}

pub type UpdateFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<api::ContainerUpdate>> + Send>>;

#[async_trait::async_trait]
impl nri_ttrpc::Runtime for RuntimeSide {
    async fn register_plugin(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: api::RegisterPluginRequest,
    ) -> ttrpc::Result<api::Empty> {
        let sender = self.registered.lock().expect("registration").take();
        match sender {
            Some(sender) => {
                let _ = sender.send((req.plugin_name, req.plugin_idx));
                Ok(api::Empty::new())
            }
            None => Err(ttrpc::error::get_rpc_status(
                ttrpc::Code::FAILED_PRECONDITION,
                "plugin already registered",
            )),
        }
    }

    async fn update_containers(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: api::UpdateContainersRequest,
    ) -> ttrpc::Result<api::UpdateContainersResponse> {
        let failed = (self.updates)(req).await;
        let mut response = api::UpdateContainersResponse::new();
        response.failed = failed;
        Ok(response)
    }
}

/// `<index>-<name>`: two digits, a dash, a name.
pub fn parse_name(file: &str) -> Option<(String, String)> {
    let (idx, base) = file.split_once('-')?;
    (check_index(idx) && !base.is_empty()).then(|| (idx.to_string(), base.to_string()))
}

fn check_index(idx: &str) -> bool {
    idx.len() == 2 && idx.bytes().all(|b| b.is_ascii_digit())
}

impl Plugin {
    /// Serves our Runtime service on `stream`, waits for the plugin to
    /// register (registration timeout), then configures it.
    pub async fn connect(
        stream: UnixStream,
        origin: Origin,
        settings: &Settings,
        updates: Arc<dyn Fn(api::UpdateContainersRequest) -> UpdateFuture + Send + Sync>,
    ) -> Result<Plugin, PluginError> {
        let label = match &origin {
            Origin::Launched { idx, base, .. } => format!("{idx}-{base}"),
            Origin::External => "external plugin".to_string(),
        };
        let fail = |message: String| PluginError::Failed {
            plugin: label.clone(),
            message,
        };
        let (trunk, [plugin_conn, runtime_conn]) = mux::multiplex(
            stream,
            [mux::PLUGIN_SERVICE_CONN, mux::RUNTIME_SERVICE_CONN],
        );
        let client =
            nri_ttrpc::PluginClient::new(ttrpc::r#async::Client::new(Socket::new(plugin_conn)));
        let (registered_tx, registered_rx) = oneshot::channel();
        let side = Arc::new(RuntimeSide {
            registered: Mutex::new(Some(registered_tx)),
            updates,
        });
        let one =
            futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(runtime_conn)));
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(Listener::new(one))
            .register_service(nri_ttrpc::create_runtime(side));
        server
            .start()
            .await
            .map_err(|e| fail(format!("cannot serve the runtime service: {e}")))?;

        let registration = tokio::select! {
            r = tokio::time::timeout(settings.registration_timeout, registered_rx) => r,
            () = trunk.closed() => return Err(fail("connection closed before registration".into())),
        };
        let (name, index) = match registration {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Err(fail("connection closed before registration".into())),
            Err(_) => {
                return Err(fail(format!(
                    "no registration within {:?}",
                    settings.registration_timeout
                )));
            }
        };
        let (idx, base, config, child) = match origin {
            Origin::Launched {
                idx,
                base,
                config,
                child,
            } => (idx, base, config, Some(child)),
            Origin::External => {
                // NRI's rule: [a-zA-Z0-9_.+-], not empty.
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
                {
                    return Err(fail(format!("registered with invalid name {name:?}")));
                }
                if !check_index(&index) {
                    return Err(fail(format!(
                        "plugin {name:?} registered with invalid index {index:?} (two digits)"
                    )));
                }
                (index, name, String::new(), None)
            }
        };
        let mut plugin = Plugin {
            idx,
            base,
            events: EventMask::default(),
            client,
            trunk,
            closed: AtomicBool::new(false),
            state_change_only: AtomicBool::new(false),
            request_timeout: settings.request_timeout,
            _server: Mutex::new(server),
            child: Mutex::new(child),
        };
        plugin.configure(&config, settings).await?;
        Ok(plugin)
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.idx, self.base)
    }

    async fn configure(&mut self, config: &str, settings: &Settings) -> Result<(), PluginError> {
        let mut req = api::ConfigureRequest::new();
        req.config = config.to_string();
        req.runtime_name = "crius".to_string();
        req.runtime_version = settings.runtime_version.clone();
        req.registration_timeout = settings.registration_timeout.as_millis() as i64;
        req.request_timeout = settings.request_timeout.as_millis() as i64;
        req.NRI_version = NRI_VERSION.to_string();
        let response = self.request("Configure", |c, ctx| {
            Box::pin(async move { c.configure(ctx, &req).await })
        });
        let response = match response.await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(self.failed("Configure: no answer in time".into())),
            Err(r) => return Err(self.refused(r)),
        };
        let events = response.events;
        if events & !EventMask::VALID != 0 {
            return Err(self.failed(format!("subscribed to invalid events {events:#x}")));
        }
        // Zero subscribes to everything.
        self.events = EventMask(if events == 0 {
            EventMask::VALID
        } else {
            events
        });
        Ok(())
    }

    /// Sends the pods and containers that exist; the plugin may answer with
    /// updates to them.
    /// Synchronize: the node's pods and containers, split over several
    /// messages where one would pass ttrpc's 4 MiB limit (`more` on all
    /// but the last, which alone may carry the plugin's updates).
    pub async fn synchronize(
        &self,
        pods: Vec<api::PodSandbox>,
        containers: Vec<api::Container>,
    ) -> Result<Vec<api::ContainerUpdate>, PluginError> {
        for req in sync_messages(pods, containers, SYNC_MESSAGE_BYTES) {
            let more = req.more;
            let answer = self
                .request("Synchronize", |c, ctx| {
                    Box::pin(async move { c.synchronize(ctx, &req).await })
                })
                .await
                .map_err(|r| self.refused(r))?
                .ok_or_else(|| self.failed("Synchronize: no answer in time".into()))?;
            if !more {
                return Ok(answer.update);
            }
            if !answer.more || !answer.update.is_empty() {
                return Err(self.failed(
                    "Synchronize: the plugin does not take the node's state split over several messages".into(),
                ));
            }
        }
        Ok(Vec::new())
    }

    pub fn subscribed(&self, event: api::Event) -> bool {
        self.events.has(event)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.trunk.is_closed()
    }

    /// Disconnects, and kills the process when criusd started it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.trunk.close();
        if let Some(mut child) = self.child.lock().expect("plugin child").take() {
            let _ = child.start_kill();
            // Reaped in the background so no zombie is left.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }

    pub async fn closed(&self) {
        self.trunk.closed().await
    }

    fn failed(&self, message: String) -> PluginError {
        PluginError::Failed {
            plugin: self.name(),
            message,
        }
    }

    /// One request under the request timeout. `Ok(None)`: the plugin timed
    /// out or its connection broke, and has been closed; the caller goes on
    /// without it. `Err`: the plugin answered with an error status.
    async fn request<T, F>(&self, what: &str, call: F) -> Result<Option<T>, Refusal>
    where
        F: for<'a> FnOnce(
            &'a nri_ttrpc::PluginClient,
            ttrpc::context::Context,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = ttrpc::Result<T>> + Send + 'a>,
        >,
    {
        if self.is_closed() {
            return Ok(None);
        }
        let ctx = ttrpc::context::with_duration(self.request_timeout);
        match tokio::time::timeout(self.request_timeout, call(&self.client, ctx)).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            Ok(Err(ttrpc::Error::RpcStatus(status)))
                if status.code() != ttrpc::Code::DEADLINE_EXCEEDED =>
            {
                Err(Refusal {
                    code: status.code(),
                    message: format!("{what}: {}", status.message()),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(plugin = %self.name(), error = %e, "NRI: {what} failed; closing the plugin");
                self.close();
                Ok(None)
            }
            Err(_) => {
                tracing::warn!(plugin = %self.name(), timeout = ?self.request_timeout, "NRI: {what} timed out; closing the plugin");
                self.close();
                Ok(None)
            }
        }
    }

    fn refused(&self, refusal: Refusal) -> PluginError {
        self.failed(refusal.message)
    }

    /// A pod event (RunPodSandbox, PostUpdatePodSandbox, StopPodSandbox,
    /// RemovePodSandbox), or a
    /// container event with no answer (PostCreate, Start, PostStart,
    /// PostUpdate, Remove): the dedicated RPC, or StateChange for plugins
    /// older than v0.12.
    pub async fn notify(
        &self,
        event: api::Event,
        pod: &api::PodSandbox,
        container: Option<&api::Container>,
    ) -> Result<(), PluginError> {
        if !self.subscribed(event) {
            return Ok(());
        }
        let what = event_name(event);
        if !self.state_change_only.load(Ordering::Relaxed) {
            let pod = MessageField::some(pod.clone());
            let ctr = container.map(|c| MessageField::some(c.clone()));
            let answer = self
                .request(what, |c, ctx| {
                    Box::pin(
                        async move { dedicated(c, ctx, event, pod, ctr.unwrap_or_default()).await },
                    )
                })
                .await;
            match answer {
                Err(r) if r.code == ttrpc::Code::UNIMPLEMENTED => {
                    self.state_change_only.store(true, Ordering::Relaxed);
                }
                other => return other.map(|_| ()).map_err(|r| self.refused(r)),
            }
        }
        let mut req = api::StateChangeEvent::new();
        req.event = EnumOrUnknown::new(event);
        req.pod = MessageField::some(pod.clone());
        if let Some(c) = container {
            req.container = MessageField::some(c.clone());
        }
        self.request(what, |c, ctx| {
            Box::pin(async move { c.state_change(ctx, &req).await })
        })
        .await
        .map(|_| ())
        .map_err(|r| self.refused(r))
    }

    /// UpdatePodSandbox: a dedicated RPC since v0.11, no StateChange form.
    pub async fn update_pod_sandbox(
        &self,
        req: &api::UpdatePodSandboxRequest,
    ) -> Result<(), PluginError> {
        if !self.subscribed(api::Event::UPDATE_POD_SANDBOX) {
            return Ok(());
        }
        let req = req.clone();
        self.request("UpdatePodSandbox", |c, ctx| {
            Box::pin(async move { c.update_pod_sandbox(ctx, &req).await })
        })
        .await
        .map(|_| ())
        .map_err(|r| self.refused(r))
    }

    pub async fn create_container(
        &self,
        req: &api::CreateContainerRequest,
    ) -> Result<Option<api::CreateContainerResponse>, PluginError> {
        if !self.subscribed(api::Event::CREATE_CONTAINER) {
            return Ok(None);
        }
        let req = req.clone();
        self.request("CreateContainer", |c, ctx| {
            Box::pin(async move { c.create_container(ctx, &req).await })
        })
        .await
        .map_err(|r| self.refused(r))
    }

    /// Whether it validates other plugins' adjustments.
    pub fn validates(&self) -> bool {
        self.subscribed(api::Event::VALIDATE_CONTAINER_ADJUSTMENT)
    }

    /// ValidateContainerAdjustment. Validation fails closed: a rejection,
    /// an error, a timeout or a broken connection all refuse the
    /// adjustment. A plugin already gone (dropped earlier in this call) is
    /// no longer a validator.
    pub async fn validate(
        &self,
        req: &api::ValidateContainerAdjustmentRequest,
    ) -> Result<(), PluginError> {
        if !self.validates() || self.is_closed() {
            return Ok(());
        }
        let req = req.clone();
        let answer = self
            .request("ValidateContainerAdjustment", |c, ctx| {
                Box::pin(async move { c.validate_container_adjustment(ctx, &req).await })
            })
            .await
            .map_err(|r| self.refused(r))?;
        match answer {
            Some(answer) if !answer.reject => Ok(()),
            Some(answer) => Err(self.failed(format!(
                "rejected the container's adjustment: {}",
                answer.reason
            ))),
            None => Err(self.failed(
                "did not answer ValidateContainerAdjustment (validation fails closed)".into(),
            )),
        }
    }

    pub async fn update_container(
        &self,
        req: &api::UpdateContainerRequest,
    ) -> Result<Option<api::UpdateContainerResponse>, PluginError> {
        if !self.subscribed(api::Event::UPDATE_CONTAINER) {
            return Ok(None);
        }
        let req = req.clone();
        self.request("UpdateContainer", |c, ctx| {
            Box::pin(async move { c.update_container(ctx, &req).await })
        })
        .await
        .map_err(|r| self.refused(r))
    }

    pub async fn stop_container(
        &self,
        req: &api::StopContainerRequest,
    ) -> Result<Option<api::StopContainerResponse>, PluginError> {
        if !self.subscribed(api::Event::STOP_CONTAINER) {
            return Ok(None);
        }
        let req = req.clone();
        self.request("StopContainer", |c, ctx| {
            Box::pin(async move { c.stop_container(ctx, &req).await })
        })
        .await
        .map_err(|r| self.refused(r))
    }

    /// Tells the plugin the runtime is going down.
    pub async fn shutdown(&self) {
        let req = api::Empty::new();
        let _ = self
            .request("Shutdown", |c, ctx| {
                Box::pin(async move { c.shutdown(ctx, &req).await })
            })
            .await;
        self.close();
    }
}

/// The dedicated RPC of an event that answers nothing the runtime uses.
async fn dedicated(
    c: &nri_ttrpc::PluginClient,
    ctx: ttrpc::context::Context,
    event: api::Event,
    pod: MessageField<api::PodSandbox>,
    container: MessageField<api::Container>,
) -> ttrpc::Result<()> {
    use api::Event as E;
    macro_rules! pod_event {
        ($req:ident, $method:ident) => {{
            let mut req = api::$req::new();
            req.pod = pod;
            c.$method(ctx, &req).await.map(|_| ())
        }};
    }
    macro_rules! container_event {
        ($req:ident, $method:ident) => {{
            let mut req = api::$req::new();
            req.pod = pod;
            req.container = container;
            c.$method(ctx, &req).await.map(|_| ())
        }};
    }
    match event {
        E::RUN_POD_SANDBOX => pod_event!(RunPodSandboxRequest, run_pod_sandbox),
        E::STOP_POD_SANDBOX => pod_event!(StopPodSandboxRequest, stop_pod_sandbox),
        E::REMOVE_POD_SANDBOX => pod_event!(RemovePodSandboxRequest, remove_pod_sandbox),
        E::POST_UPDATE_POD_SANDBOX => {
            pod_event!(PostUpdatePodSandboxRequest, post_update_pod_sandbox)
        }
        E::POST_CREATE_CONTAINER => {
            container_event!(PostCreateContainerRequest, post_create_container)
        }
        E::START_CONTAINER => container_event!(StartContainerRequest, start_container),
        E::POST_START_CONTAINER => {
            container_event!(PostStartContainerRequest, post_start_container)
        }
        E::POST_UPDATE_CONTAINER => {
            container_event!(PostUpdateContainerRequest, post_update_container)
        }
        E::REMOVE_CONTAINER => container_event!(RemoveContainerRequest, remove_container),
        _ => Ok(()),
    }
}

/// What one Synchronize message may carry: under ttrpc's 4 MiB limit with
/// room for the frame and the request's own fields.
const SYNC_MESSAGE_BYTES: usize = 3 << 20;

/// The node's state as Synchronize messages of at most `limit` bytes each
/// (one object larger than that goes alone), pods first; always at least
/// one message.
fn sync_messages(
    pods: Vec<api::PodSandbox>,
    containers: Vec<api::Container>,
    limit: usize,
) -> Vec<api::SynchronizeRequest> {
    // A repeated field's entry: its bytes, a tag and a length prefix.
    fn entry_size(bytes: u64) -> usize {
        bytes as usize + 1 + 5
    }
    let mut messages = vec![api::SynchronizeRequest::new()];
    let mut size = 0;
    let mut room_for = |bytes: usize, messages: &mut Vec<api::SynchronizeRequest>| {
        let current = messages.last().expect("a message");
        let empty = current.pods.is_empty() && current.containers.is_empty();
        if size + bytes > limit && !empty {
            messages.push(api::SynchronizeRequest::new());
            size = 0;
        }
        size += bytes;
    };
    for pod in pods {
        room_for(entry_size(pod.compute_size()), &mut messages);
        messages.last_mut().expect("a message").pods.push(pod);
    }
    for container in containers {
        room_for(entry_size(container.compute_size()), &mut messages);
        messages
            .last_mut()
            .expect("a message")
            .containers
            .push(container);
    }
    let count = messages.len();
    for m in &mut messages[..count - 1] {
        m.more = true;
    }
    messages
}

pub fn event_name(event: api::Event) -> &'static str {
    use api::Event as E;
    match event {
        E::RUN_POD_SANDBOX => "RunPodSandbox",
        E::STOP_POD_SANDBOX => "StopPodSandbox",
        E::REMOVE_POD_SANDBOX => "RemovePodSandbox",
        E::CREATE_CONTAINER => "CreateContainer",
        E::POST_CREATE_CONTAINER => "PostCreateContainer",
        E::START_CONTAINER => "StartContainer",
        E::POST_START_CONTAINER => "PostStartContainer",
        E::UPDATE_CONTAINER => "UpdateContainer",
        E::POST_UPDATE_CONTAINER => "PostUpdateContainer",
        E::STOP_CONTAINER => "StopContainer",
        E::REMOVE_CONTAINER => "RemoveContainer",
        E::UPDATE_POD_SANDBOX => "UpdatePodSandbox",
        E::POST_UPDATE_POD_SANDBOX => "PostUpdatePodSandbox",
        E::VALIDATE_CONTAINER_ADJUSTMENT => "ValidateContainerAdjustment",
        E::UNKNOWN | E::LAST => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_is_split_into_synchronize_messages_under_the_limit() {
        let pod = |n: usize| {
            let mut p = api::PodSandbox::new();
            p.id = format!("pod-{n}");
            p.annotations.insert("big".into(), "x".repeat(1000));
            p
        };
        let container = |n: usize| {
            let mut c = api::Container::new();
            c.id = format!("ctr-{n}");
            c.args = vec!["y".repeat(500)];
            c
        };
        let messages = sync_messages(
            (0..10).map(pod).collect(),
            (0..10).map(container).collect(),
            4000,
        );
        assert!(messages.len() > 1);
        let pods: usize = messages.iter().map(|m| m.pods.len()).sum();
        let containers: usize = messages.iter().map(|m| m.containers.len()).sum();
        assert_eq!((pods, containers), (10, 10));
        for (i, m) in messages.iter().enumerate() {
            assert!(m.compute_size() <= 4000 + 6, "message {i}");
            assert_eq!(m.more, i + 1 < messages.len());
        }
        // Nothing to send is still one message, the last.
        let empty = sync_messages(Vec::new(), Vec::new(), 4000);
        assert_eq!(empty.len(), 1);
        assert!(!empty[0].more);
    }

    #[test]
    fn plugin_names_are_index_dash_name() {
        assert_eq!(
            parse_name("10-logger"),
            Some(("10".to_string(), "logger".to_string()))
        );
        assert_eq!(
            parse_name("05-a-b"),
            Some(("05".to_string(), "a-b".to_string()))
        );
        for bad in ["logger", "1-logger", "100-logger", "ab-logger", "10-"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_mask_bits_follow_the_event_numbers() {
        let mask = EventMask(1 << (api::Event::CREATE_CONTAINER as i32 - 1));
        assert!(mask.has(api::Event::CREATE_CONTAINER));
        assert!(!mask.has(api::Event::RUN_POD_SANDBOX));
        assert!(EventMask(EventMask::VALID).has(api::Event::VALIDATE_CONTAINER_ADJUSTMENT));
        assert_eq!(EventMask::VALID, 0x3fff);
    }
}
