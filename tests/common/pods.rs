//! A pod on a real criusd, for container tests: the daemon, a sandbox with
//! a log directory, the harness's busybox image pulled, and helpers to run
//! containers and read their logs.

use super::Daemon;
use crius::cri;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The harness registry (from CRIUS_E2E_IMAGES, written by `make test`).
pub fn registry() -> String {
    let path =
        std::env::var("CRIUS_E2E_IMAGES").expect("CRIUS_E2E_IMAGES: run through `make test`");
    let summary: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    summary["registry"].as_str().unwrap().to_string()
}

pub fn image(name: &str) -> String {
    format!("{}/crius-test/{name}:latest", registry())
}

pub struct Pod {
    pub daemon: Daemon,
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub logs: PathBuf,
}

/// Merges `overlay` into `base` (objects key by key).
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

impl Pod {
    /// A daemon and one ready pod; `pod` is merged over the default config.
    pub async fn new(pod: Value) -> Pod {
        Pod::new_on(Daemon::start(), pod).await
    }

    pub async fn new_on(daemon: Daemon, pod: Value) -> Pod {
        let logs = daemon.dir.join("pod-logs");
        let config = sandbox_config(&daemon, pod);
        for name in ["busybox", "config", "user-name"] {
            daemon.pull(&image(name), None).await.unwrap();
        }
        let id = daemon
            .runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        Pod {
            daemon,
            id,
            config,
            logs,
        }
    }

    /// Another pod on this pod's daemon: the default config with `overlay`
    /// (which should give it its own metadata name). Containers go in with
    /// `create_in`; removing this pod's daemon cleans it up.
    pub async fn sibling(&self, overlay: Value) -> Result<Sandbox, tonic::Status> {
        let config = sandbox_config(&self.daemon, overlay);
        let id = self
            .daemon
            .runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        Ok(Sandbox { id, config })
    }

    /// CreateContainer with `overlay` merged over a busybox container named
    /// `name` logging to `<name>.log`.
    pub async fn create(&self, name: &str, overlay: Value) -> Result<String, tonic::Status> {
        let sandbox = Sandbox {
            id: self.id.clone(),
            config: self.config.clone(),
        };
        self.create_in(&sandbox, name, overlay).await
    }

    /// `create` in another sandbox of this daemon.
    pub async fn create_in(
        &self,
        sandbox: &Sandbox,
        name: &str,
        overlay: Value,
    ) -> Result<String, tonic::Status> {
        let mut config = json!({
            "metadata": {"name": name},
            "image": {"image": image("busybox")},
            "log_path": format!("{name}.log"),
            "linux": {"security_context": {"namespace_options": {"pid": 1}}}
        });
        merge(&mut config, overlay);
        let config: cri::ContainerConfig = serde_json::from_value(config).unwrap();
        Ok(self
            .daemon
            .runtime()
            .await
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    /// Create and start.
    pub async fn run(&self, name: &str, overlay: Value) -> String {
        let id = self.create(name, overlay).await.unwrap();
        self.start(&id).await.unwrap();
        id
    }

    pub async fn start(&self, id: &str) -> Result<(), tonic::Status> {
        self.daemon
            .runtime()
            .await
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        self.daemon
            .runtime()
            .await
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map(|_| ())
    }

    pub async fn remove(&self, id: &str) -> Result<(), tonic::Status> {
        self.daemon
            .runtime()
            .await
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn status(&self, id: &str) -> Result<cri::ContainerStatus, tonic::Status> {
        Ok(self
            .daemon
            .runtime()
            .await
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap())
    }

    /// The container's init as the node sees it (verbose status's `pid`).
    pub async fn init_pid(&self, id: &str) -> i32 {
        let info = self
            .daemon
            .runtime()
            .await
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
        let info: Value = serde_json::from_str(&info["info"]).unwrap();
        info["pid"].as_i64().unwrap() as i32
    }

    /// Waits for the container to exit and returns its status.
    pub async fn wait_exit(&self, id: &str, timeout: Duration) -> cri::ContainerStatus {
        let deadline = Instant::now() + super::patience(timeout);
        loop {
            let status = self.status(id).await.unwrap();
            if status.state == cri::ContainerState::ContainerExited as i32 {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still runs: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn exec(&self, id: &str, cmd: &[&str]) -> (i32, String, String) {
        let resp = self
            .exec_with(id, cmd, 0)
            .await
            .unwrap_or_else(|e| panic!("exec {cmd:?}: {e:?}"));
        (
            resp.exit_code,
            String::from_utf8_lossy(&resp.stdout).into_owned(),
            String::from_utf8_lossy(&resp.stderr).into_owned(),
        )
    }

    pub async fn exec_with(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        Ok(self
            .daemon
            .runtime()
            .await
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await?
            .into_inner())
    }

    /// The log records of container `name`: (stream, partial, text).
    pub fn log(&self, name: &str) -> Vec<(String, bool, String)> {
        let bytes = std::fs::read(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = crius_shim::cri_log::parse(l)
                    .unwrap_or_else(|| panic!("bad log line {:?}", String::from_utf8_lossy(l)));
                (
                    r.stream.to_string(),
                    r.partial,
                    String::from_utf8_lossy(r.text).into_owned(),
                )
            })
            .collect()
    }

    /// Removes the pod (and its containers).
    pub async fn remove_pod(&self) {
        self.daemon
            .runtime()
            .await
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: self.id.clone(),
            })
            .await
            .unwrap();
    }
}

/// Another sandbox on a `Pod`'s daemon.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

/// The tests' default sandbox config with `overlay` merged over it.
fn sandbox_config(daemon: &Daemon, overlay: Value) -> cri::PodSandboxConfig {
    let logs = daemon.dir.join("pod-logs");
    let mut config = json!({
        "metadata": {"name": "pod", "namespace": "default", "uid": "pod-uid", "attempt": 0},
        "hostname": "test-pod",
        "log_directory": logs,
        "dns_config": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"]},
        "linux": {
            "cgroup_parent": super::pod_cgroup_parent(&daemon.dir.file_name().unwrap().to_string_lossy()),
            "security_context": {"namespace_options": {"network": 0, "pid": 1, "ipc": 0}}
        }
    });
    merge(&mut config, overlay);
    serde_json::from_value(config).unwrap()
}
