//! Test fixture: a real criusd on a temporary socket, root and state dir,
//! stopped (SIGTERM, then SIGKILL) when dropped, even when a test fails.

#![allow(dead_code)]

pub mod net;
pub mod pods;

use crius::client;
use crius::cri::image_service_client::ImageServiceClient;
use crius::cri::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const CRIUSD: &str = env!("CARGO_BIN_EXE_criusd");

/// How long a test waits for something that takes `d` on this machine, on
/// a slower one: `CRIUS_TEST_SLOWDOWN` (a factor, default 1) scales it, as
/// the VM lane does for guests under emulation (e2e/node/in-guest.sh).
pub fn patience(d: Duration) -> Duration {
    let factor = std::env::var("CRIUS_TEST_SLOWDOWN")
        .ok()
        .and_then(|f| f.parse::<f64>().ok())
        .filter(|f| *f >= 1.0)
        .unwrap_or(1.0);
    d.mul_f64(factor)
}
pub const CRIUSCTL: &str = env!("CARGO_BIN_EXE_criusctl");

pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts criusd in a fresh temporary directory.
    pub fn start() -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("crius-it-")
            .tempdir()
            .unwrap();
        let mut daemon = Daemon::start_in(tmp.path(), &[]);
        daemon._tmp = Some(tmp);
        daemon
    }

    /// Starts criusd in a fresh temporary directory with `config` (TOML
    /// merged over the defaults).
    pub fn start_with_config(config: &str) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("crius-it-")
            .tempdir()
            .unwrap();
        let file = tmp.path().join("config.toml");
        std::fs::write(&file, config).unwrap();
        let mut daemon = Daemon::start_in(tmp.path(), &["--config", file.to_str().unwrap()]);
        daemon._tmp = Some(tmp);
        daemon
    }

    /// Starts criusd in a fresh temporary directory without the capabilities
    /// `dropped` (numbers) in its bounding set, as a runtime in a container
    /// runs.
    pub fn start_without_caps(dropped: &[u32]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("crius-it-")
            .tempdir()
            .unwrap();
        let socket = tmp.path().join("crius.sock");
        let mut daemon = Daemon {
            dir: tmp.path().to_path_buf(),
            socket,
            child: Some(spawn_with(tmp.path(), &[], dropped)),
            _tmp: Some(tmp),
        };
        daemon.wait_ready();
        daemon
    }

    /// Starts criusd using `dir` for socket, root, state and log; `extra` flags
    /// are appended.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("crius.sock");
        let child = spawn(dir, extra);
        let mut daemon = Daemon {
            dir: dir.to_path_buf(),
            socket,
            child: Some(child),
            _tmp: None,
        };
        daemon.wait_ready();
        daemon
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("criusd.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        client::runtime_client(self.channel().await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        client::image_client(self.channel().await)
    }

    /// PullImage; returns the image ref.
    pub async fn pull(
        &self,
        name: &str,
        auth: Option<crius::cri::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        let request = crius::cri::PullImageRequest {
            image: Some(crius::cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            auth,
            ..Default::default()
        };
        Ok(self
            .images()
            .await
            .pull_image(request)
            .await?
            .into_inner()
            .image_ref)
    }

    async fn channel(&self) -> Channel {
        client::connect(
            &self.endpoint(),
            patience(Duration::from_secs(10)),
            Some(patience(Duration::from_secs(60))),
        )
        .await
        .unwrap()
    }

    /// Sends `signal` and waits for the exit; returns the exit code.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + patience(Duration::from_secs(15));
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("criusd did not exit after {signal}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + patience(Duration::from_secs(20));
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("criusd exited early with {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "criusd did not serve {} in time; log:\n{}",
            self.socket.display(),
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop_with(nix::sys::signal::Signal::SIGTERM);
        }
        // A fixture-owned dir goes with the fixture: leave nothing behind,
        // even when the test failed before removing its pods.
        if self._tmp.is_some() {
            cleanup_dir(&self.dir);
        }
    }
}

/// For tests that restart daemons in their own dir: cleans it up on drop
/// (declare it after the TempDir, so it drops first).
pub struct CleanupGuard(pub PathBuf);

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        cleanup_dir(&self.0);
    }
}

/// Kills the containers (through their runtime) and pause processes of
/// sandboxes under `dir` and lazily unmounts everything mounted below it
/// (pinned namespaces, shm, rootfs overlays).
pub fn cleanup_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir.join("state/containers")) {
        for entry in entries.flatten() {
            let config: Option<crius_shim::protocol::ShimConfig> =
                std::fs::read(entry.path().join("shim.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(c) = config {
                let _ = Command::new(&c.runtime)
                    .arg("--root")
                    .arg(&c.runtime_root)
                    .args(["delete", "--force", &c.id])
                    .output();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("state/sandboxes")) {
        for entry in entries.flatten() {
            let pid = std::fs::read_to_string(entry.path().join("pause.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            let ours = pid.is_some_and(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .is_ok_and(|exe| exe.ends_with("crius-pause"))
            });
            if let (Some(pid), true) = (pid, ours) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let prefix = format!("{}/", dir.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    }
    // The pod cgroups the tests name after their dir (pods::Pod), empty
    // once the runtime deleted the containers' own: kubelet's to remove.
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    if systemd_node() {
        let _ = Command::new("systemctl")
            .args(["stop", &pod_slice(&name)])
            .output();
        return;
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = hierarchy.path().join("crius-test");
        let _ = std::fs::remove_dir(parent.join(&*name));
        let _ = std::fs::remove_dir(parent);
    }
}

/// Whether crius offers user namespaces on this kernel (5.19: overlayfs
/// over idmapped layers); where it does not, RunPodSandbox refuses them.
pub fn user_namespaces_supported() -> bool {
    let uts = nix::sys::utsname::uname().unwrap();
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 19)
}

/// Whether criusd's default (`cgroup_driver = "auto"`) is the systemd
/// driver here: systemd runs as init.
pub fn systemd_node() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The slice of a test pod named `name`, as kubelet's systemd driver names
/// pod slices (its '-' nests, so other dashes become '_').
pub fn pod_slice(name: &str) -> String {
    format!("crius_test-{}.slice", name.replace('-', "_"))
}

/// A test pod's `cgroup_parent` in the form kubelet sends for the node's
/// cgroup driver.
pub fn pod_cgroup_parent(name: &str) -> String {
    if systemd_node() {
        format!("/crius_test.slice/{}", pod_slice(name))
    } else {
        format!("/crius-test/{name}")
    }
}

/// Where a cgroup (relative to a hierarchy's root, as `pod_cgroup_parent`
/// names it) is for controller `controller`: its v1 hierarchy or the v2 tree.
pub fn cgroup_dir(controller: &str, cgroup: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    let relative = cgroup.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        root.join(relative)
    } else {
        root.join(controller).join(relative)
    }
}

/// An `[nri]` table with the socket and plugin dirs under `dir`, so that
/// daemons side by side never share them (NRI stays on, as by default).
pub fn private_nri(dir: &Path) -> String {
    format!(
        "[nri]\nsocket_path = \"{0}/nri.sock\"\nplugin_path = \"{0}/nri-plugins\"\nplugin_config_path = \"{0}/nri-conf.d\"\n",
        dir.display()
    )
}

/// Adds `private_nri` to a test's config file that has no `[nri]` table.
fn give_private_nri(file: &Path, dir: &Path) {
    if let Ok(text) = std::fs::read_to_string(file)
        && !text.contains("[nri]")
    {
        std::fs::write(file, format!("{text}\n{}", private_nri(dir))).unwrap();
    }
}

fn spawn(dir: &Path, extra: &[&str]) -> Child {
    spawn_with(dir, extra, &[])
}

fn spawn_with(dir: &Path, extra: &[&str], dropped_caps: &[u32]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("criusd.log"))
        .unwrap();
    let mut cmd = Command::new(CRIUSD);
    if !extra.contains(&"--config") {
        // An operator's /etc/crius/config.toml must not leak into tests, and
        // tests running side by side must not share the built-in network's
        // bridge with separate address stores: tests of it configure their own.
        // Nor may they contend for the metrics port: each takes a free one.
        // Nor may they share NRI's socket and plugin dirs: each has its own.
        let config = dir.join("config.toml");
        if !config.exists() {
            std::fs::write(
                &config,
                format!(
                    "[network.builtin]\nenabled = false\n[metrics]\naddress = \"127.0.0.1:0\"\n{}",
                    private_nri(dir)
                ),
            )
            .unwrap();
        }
        cmd.arg("--config").arg(&config);
        give_private_nri(&config, dir);
    } else if let Some(file) = extra
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| extra.get(i + 1))
    {
        give_private_nri(Path::new(file), dir);
    }
    cmd.env_remove("CRIUS_CONFIG")
        .arg("--listen")
        .arg(dir.join("crius.sock"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .args(["--log-level", "debug"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let dropped = dropped_caps.to_vec();
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for &cap in &dropped {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Runs criusd to completion (for start-up failures); returns (code, stderr).
pub fn run_criusd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(CRIUSD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs criusctl; returns (success, stdout, stderr).
pub fn criusctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(CRIUSCTL)
        .args(["--runtime-endpoint", endpoint, "--timeout", "10s"])
        .args(args)
        .env("CRI_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod fake_registry;
pub mod push;
pub mod raw_grpc;
pub mod registry_process;
pub mod ws;
