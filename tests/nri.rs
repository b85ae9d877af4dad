//! NRI on a real criusd, with the test plugin of `common/nri_plugin.rs`
//! connected to the daemon's private NRI socket: events in lifecycle order,
//! each kind of adjustment reaching config.json and the running container,
//! conflicts between two plugins, a plugin that hangs (dropped within the
//! request timeout), one that never registers (dropped after the
//! registration timeout), one that fails a call (rolled back), a v0.11 plugin
//! (events through StateChange), UpdateContainer answers and unsolicited
//! updates, and a reconnecting plugin resynchronized.

mod common;
#[path = "common/nri_plugin.rs"]
mod nri_plugin;

use common::pods::Pod;
use common::{CleanupGuard, Daemon, patience};
use crius::cri;
use crius::nri::api;
use nri_plugin::{Script, TestPlugin};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn socket(daemon: &Daemon) -> std::path::PathBuf {
    daemon.dir.join("nri.sock")
}

/// A test's dir: what the daemon left is cleaned up, then the dir goes.
/// Declared before the daemon, so that it is dropped after it.
struct Fixture {
    guard: CleanupGuard,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    /// `extra` goes into the daemon's `[nri]` table.
    fn new(extra: &str) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("crius-it-")
            .tempdir()
            .unwrap();
        std::fs::write(
            tmp.path().join("config.toml"),
            format!(
                "[network.builtin]\nenabled = false\n[metrics]\naddress = \"127.0.0.1:0\"\n{}{extra}",
                common::private_nri(tmp.path())
            ),
        )
        .unwrap();
        Fixture {
            guard: CleanupGuard(tmp.path().to_path_buf()),
            _tmp: tmp,
        }
    }

    fn daemon(&self) -> Daemon {
        Daemon::start_in(&self.guard.0, &[])
    }
}

fn spec_of(daemon: &Daemon, id: &str) -> Value {
    let path = daemon
        .dir
        .join("state/containers")
        .join(id)
        .join("config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

async fn nri_status(daemon: &Daemon) -> Value {
    let info = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    serde_json::from_str(&info["nri"]).unwrap()
}

/// Waits until the daemon lists no plugin.
async fn wait_unlisted(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = nri_status(daemon).await;
        if status["plugins"] == json!([]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a plugin is still listed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sleeper() -> Value {
    json!({"command": ["sleep", "300"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn events_reach_a_plugin_in_lifecycle_order() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let plugin = TestPlugin::connect(&socket(&daemon), Script::new("10", "order")).await;
    let status = nri_status(&daemon).await;
    assert_eq!(status["plugins"], json!(["10-order"]), "{status}");
    assert_eq!(status["socket"]["listening"], true, "{status}");

    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod.create("ctr", sleeper()).await.unwrap();
    pod.start(&id).await.unwrap();
    pod.stop(&id, 0).await.unwrap();
    pod.remove(&id).await.unwrap();
    let runtime = || async { pod.daemon.runtime().await };
    runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    let pod_name = pod.config.metadata.as_ref().unwrap().name.clone();
    let expected: Vec<String> = [
        "Configure crius".to_string(),
        "Synchronize 0 0".into(),
        format!("RunPodSandbox {pod_name}"),
        "CreateContainer ctr".into(),
        "ValidateContainerAdjustment ctr".into(),
        "PostCreateContainer ctr".into(),
        "StartContainer ctr".into(),
        "PostStartContainer ctr".into(),
        "StopContainer ctr".into(),
        "RemoveContainer ctr".into(),
        format!("StopPodSandbox {pod_name}"),
        format!("RemovePodSandbox {pod_name}"),
    ]
    .to_vec();
    assert_eq!(plugin.events(), expected);
}

/// A container that exits on its own is reported stopped when it exits,
/// as containerd does, and its StopContainer and RemoveContainer calls do
/// not report it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_container_that_exits_on_its_own_is_reported_stopped_once() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let plugin = TestPlugin::connect(&socket(&daemon), Script::new("10", "exits")).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod
        .run("brief", json!({"command": ["sh", "-c", "exit 3"]}))
        .await;
    plugin
        .wait_for("StopContainer brief", Duration::from_secs(10))
        .await;
    let status = pod.status(&id).await.unwrap();
    assert_eq!(status.exit_code, 3);
    pod.stop(&id, 0).await.unwrap();
    pod.remove(&id).await.unwrap();
    plugin
        .wait_for("RemoveContainer brief", Duration::from_secs(10))
        .await;
    let stops = plugin
        .events()
        .iter()
        .filter(|e| *e == "StopContainer brief")
        .count();
    assert_eq!(stops, 1, "{:?}", plugin.events());
    pod.remove_pod().await;
}

/// A plugin that moves the container's cgroup: the container runs there,
/// and its stats are read from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_cgroup_a_plugin_chose_is_where_stats_are_read() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let mut mover = Script::new("10", "mover");
    let parent = format!("crius-nri-moved-{}", std::process::id());
    mover.adjust = Some(Arc::new({
        let parent = parent.clone();
        move |req: &api::CreateContainerRequest| {
            let mut r = api::CreateContainerResponse::new();
            let path = if std::path::Path::new("/run/systemd/system").exists() {
                format!("{parent}.slice:nri:{}", req.container.id)
            } else {
                format!("/{parent}/moved-{}", req.container.id)
            };
            r.adjust
                .mut_or_insert_default()
                .linux
                .mut_or_insert_default()
                .cgroups_path = path;
            r
        }
    }));
    let _mover = TestPlugin::connect(&socket(&daemon), mover).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod
        .run("moved", json!({"command": ["sh", "-c", "x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 600"]}))
        .await;
    let pid = pod.init_pid(&id).await;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroup.contains(&parent), "{cgroup}");
    let mut runtime = pod.daemon.runtime().await;
    let until = Instant::now() + common::patience(Duration::from_secs(10));
    let stats = loop {
        let stats = runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let memory = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref());
        if memory.is_some_and(|m| m.value > 0) || Instant::now() > until {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let memory = stats.memory.unwrap().working_set_bytes.unwrap().value;
    assert!(memory > 0, "stats from the moved cgroup: {memory}");
    let cpu = stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    assert!(cpu > 0, "CPU from the moved cgroup: {cpu}");
    pod.remove_pod().await;
    // The runtime removed the container's cgroup; its parent is the test's.
    let roots = std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten();
    for root in roots
        .map(|e| e.path())
        .chain([std::path::PathBuf::from("/sys/fs/cgroup")])
    {
        let _ = std::fs::remove_dir(root.join(&parent));
    }
}

/// The adjustment the test plugin makes: one of each kind crius applies.
fn adjust_everything(host_dir: String) -> Arc<nri_plugin::AdjusterFn> {
    Arc::new(move |_req: &api::CreateContainerRequest| {
        let mut r = api::CreateContainerResponse::new();
        let a = r.adjust.mut_or_insert_default();
        a.annotations
            .insert("nri.test/annotation".into(), "yes".into());
        let mut env = api::KeyValue::new();
        env.key = "NRI_ENV".into();
        env.value = "set-by-plugin".into();
        a.env.push(env);
        let mut mount = api::Mount::new();
        mount.destination = "/nri-data".into();
        mount.source = host_dir.clone();
        mount.type_ = "bind".into();
        mount.options = vec!["rbind".into(), "ro".into()];
        a.mounts.push(mount);
        let mut hook = api::Hook::new();
        hook.path = "/bin/true".into();
        hook.args = vec!["true".into(), "nri-hook".into()];
        a.hooks.mut_or_insert_default().prestart.push(hook);
        let mut rlimit = api::POSIXRlimit::new();
        rlimit.type_ = "RLIMIT_NOFILE".into();
        rlimit.hard = 4321;
        rlimit.soft = 1234;
        a.rlimits.push(rlimit);
        let l = a.linux.mut_or_insert_default();
        let mut dev = api::LinuxDevice::new();
        dev.path = "/dev/nri-null".into();
        dev.type_ = "c".into();
        dev.major = 1;
        dev.minor = 3;
        dev.file_mode.mut_or_insert_default().value = 0o666;
        l.devices.push(dev);
        l.oom_score_adj.mut_or_insert_default().value = 123;
        let res = l.resources.mut_or_insert_default();
        res.memory
            .mut_or_insert_default()
            .limit
            .mut_or_insert_default()
            .value = 64 << 20;
        res.cpu
            .mut_or_insert_default()
            .shares
            .mut_or_insert_default()
            .value = 512;
        res.pids.mut_or_insert_default().limit = 77;
        r
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn adjustments_reach_the_oci_spec_and_the_container() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let host_dir = fixture.guard.0.join("nri-host-data");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "from-nri\n").unwrap();
    let mut script = Script::new("10", "adjuster");
    script.adjust = Some(adjust_everything(host_dir.display().to_string()));
    let _plugin = TestPlugin::connect(&socket(&daemon), script).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod.create("adjusted", sleeper()).await.unwrap();

    let spec = spec_of(&pod.daemon, &id);
    assert_eq!(spec["annotations"]["nri.test/annotation"], "yes");
    assert!(
        spec["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("NRI_ENV=set-by-plugin")),
        "{}",
        spec["process"]["env"]
    );
    let mount = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/nri-data")
        .expect("the plugin's mount");
    assert_eq!(mount["source"], host_dir.display().to_string());
    assert_eq!(spec["hooks"]["prestart"][0]["path"], "/bin/true");
    assert_eq!(
        spec["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 4321, "soft": 1234}])
    );
    assert_eq!(spec["process"]["oomScoreAdj"], 123);
    assert!(
        spec["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/nri-null" && d["major"] == 1 && d["minor"] == 3)
    );
    let res = &spec["linux"]["resources"];
    assert_eq!(res["memory"]["limit"], 64 << 20);
    assert_eq!(res["cpu"]["shares"], 512);
    assert_eq!(res["pids"]["limit"], 77);

    // And they hold in the running container.
    pod.start(&id).await.unwrap();
    let (code, out, err) = pod
        .exec(
            &id,
            &[
                "sh",
                "-c",
                "tr '\\0' '\\n' </proc/1/environ | grep ^NRI_ENV=; cat /nri-data/hello; \
                 grep 'open files' /proc/1/limits | awk '{print $4, $5}'; \
                 stat -c %t:%T /dev/nri-null; cat /proc/1/oom_score_adj",
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "NRI_ENV=set-by-plugin\nfrom-nri\n1234 4321\n1:3\n123\n"
    );
}

/// A validator sees the container as it came, every adjustment with its
/// owner, and the plugins consulted; its refusal fails the create with
/// FailedPrecondition naming it and its reason, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_validator_sees_owners_and_its_refusal_fails_the_create() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let mut adjuster = Script::new("10", "adjuster");
    adjuster.events = event_mask(&[api::Event::CREATE_CONTAINER]);
    adjuster.adjust = Some(Arc::new(|_: &api::CreateContainerRequest| {
        let mut r = api::CreateContainerResponse::new();
        let a = r.adjust.mut_or_insert_default();
        a.annotations
            .insert("nri.test/adjusted".into(), "yes".into());
        let mut hook = api::Hook::new();
        hook.path = "/bin/true".into();
        a.hooks.mut_or_insert_default().prestart.push(hook);
        a.linux
            .mut_or_insert_default()
            .resources
            .mut_or_insert_default()
            .pids
            .mut_or_insert_default()
            .limit = 99;
        r
    }));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut validator = Script::new("90", "validator");
    validator.events = event_mask(&[api::Event::VALIDATE_CONTAINER_ADJUSTMENT]);
    validator.validate = Some(Arc::new({
        let seen = seen.clone();
        move |req: &api::ValidateContainerAdjustmentRequest| {
            seen.lock().unwrap().push(req.clone());
            let mut r = api::ValidateContainerAdjustmentResponse::new();
            if req.container.name == "denied" {
                r.reject = true;
                r.reason = "pids limits are not for denied containers".into();
            }
            r
        }
    }));
    let _adjuster = TestPlugin::connect(&socket(&daemon), adjuster).await;
    let _validator = TestPlugin::connect(&socket(&daemon), validator).await;
    let pod = Pod::new_on(daemon, json!({})).await;

    let id = pod.create("allowed", sleeper()).await.unwrap();
    let req = seen.lock().unwrap().pop().expect("a validation request");
    assert_eq!(req.container.id, id);
    assert!(
        !req.container.annotations.contains_key("nri.test/adjusted"),
        "the container as it came"
    );
    assert_eq!(req.adjust.annotations["nri.test/adjusted"], "yes");
    let owners = &req.owners.owners[&id];
    let annotations = &owners.compound[&(api::Field::Annotations as i32)];
    assert_eq!(annotations.owners["nri.test/adjusted"], "10-adjuster");
    assert_eq!(owners.simple[&(api::Field::OciHooks as i32)], "10-adjuster");
    assert_eq!(
        owners.simple[&(api::Field::PidsLimit as i32)],
        "10-adjuster"
    );
    let consulted: Vec<String> = req
        .plugins
        .iter()
        .map(|p| format!("{}-{}", p.index, p.name))
        .collect();
    assert_eq!(consulted, ["10-adjuster", "90-validator"]);

    let err = pod.create("denied", sleeper()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("90-validator")
            && err
                .message()
                .contains("pids limits are not for denied containers"),
        "{}",
        err.message()
    );
    let listed = containers(&pod.daemon).await;
    assert_eq!(listed.len(), 1, "only the allowed one: {listed:?}");
    pod.remove_pod().await;
}

async fn containers(daemon: &Daemon) -> Vec<cri::Container> {
    daemon
        .runtime()
        .await
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
}

fn event_mask(events: &[api::Event]) -> i32 {
    events.iter().map(|e| 1 << (*e as i32 - 1)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn two_plugins_setting_one_annotation_conflict_and_nothing_is_left() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let annotate = |value: &'static str| {
        Arc::new(move |_: &api::CreateContainerRequest| {
            let mut r = api::CreateContainerResponse::new();
            r.adjust
                .mut_or_insert_default()
                .annotations
                .insert("nri.test/owner".into(), value.into());
            r
        }) as Arc<nri_plugin::AdjusterFn>
    };
    let mut one = Script::new("10", "one");
    one.adjust = Some(annotate("one"));
    let mut two = Script::new("20", "two");
    two.adjust = Some(annotate("two"));
    let p1 = TestPlugin::connect(&socket(&daemon), one).await;
    let p2 = TestPlugin::connect(&socket(&daemon), two).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let err = pod.create("conflicted", sleeper()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("\"20-two\"")
            && err.message().contains("\"10-one\"")
            && err.message().contains("annotation \"nri.test/owner\""),
        "{}",
        err.message()
    );
    // Both plugins were asked; both hear the create undone.
    for p in [&p1, &p2] {
        let events = p.events();
        let tail: Vec<&str> = events
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "CreateContainer conflicted",
                "StopContainer conflicted",
                "RemoveContainer conflicted"
            ],
            "{events:?}"
        );
    }
    let listed = containers(&pod.daemon).await;
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(
        std::fs::read_dir(pod.daemon.dir.join("state/containers"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_hanging_plugin_is_dropped_and_the_call_answers_within_the_timeout() {
    let fixture = Fixture::new("plugin_request_timeout_ms = 500\n");
    let daemon = fixture.daemon();
    let mut script = Script::new("10", "hang");
    script.hang_on = Some("CreateContainer".into());
    let plugin = TestPlugin::connect(&socket(&daemon), script).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let started = Instant::now();
    let id = pod.create("patient", sleeper()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "CreateContainer took {took:?}"
    );
    assert!(plugin.disconnected_within(Duration::from_secs(2)).await);
    wait_unlisted(&pod.daemon).await;
    // Later calls do not wait for it.
    let started = Instant::now();
    pod.start(&id).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_plugin_refusing_run_pod_sandbox_fails_it_and_the_pod_is_gone() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let mut script = Script::new("10", "refuse");
    script.fail_on = Some("RunPodSandbox".into());
    let plugin = TestPlugin::connect(&socket(&daemon), script).await;
    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
        "metadata": {"name": "refused", "uid": "u-refused", "namespace": "nri"},
        "log_directory": daemon.dir.join("logs").display().to_string(),
    }))
    .unwrap();
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("10-refuse") && err.message().contains("test plugin refuses"),
        "{err:?}"
    );
    let pods = daemon
        .runtime()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    plugin
        .wait_for("RemovePodSandbox refused", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_v011_plugin_gets_events_through_state_change() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let mut script = Script::new("10", "old");
    script.v011 = true;
    let plugin = TestPlugin::connect(&socket(&daemon), script).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod.create("old", sleeper()).await.unwrap();
    pod.start(&id).await.unwrap();
    plugin
        .wait_for(
            "StateChange:POST_START_CONTAINER old",
            Duration::from_secs(2),
        )
        .await;
    let events = plugin.events();
    let pod_name = pod.config.metadata.as_ref().unwrap().name.clone();
    for expected in [
        format!("StateChange:RUN_POD_SANDBOX {pod_name}"),
        "CreateContainer old".to_string(),
        "StateChange:POST_CREATE_CONTAINER old".into(),
        "StateChange:START_CONTAINER old".into(),
        "StateChange:POST_START_CONTAINER old".into(),
    ] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
}

fn cpu_update(id: &str, quota: i64) -> api::ContainerUpdate {
    let mut u = api::ContainerUpdate::new();
    u.container_id = id.into();
    let r = u
        .linux
        .mut_or_insert_default()
        .resources
        .mut_or_insert_default();
    r.cpu
        .mut_or_insert_default()
        .quota
        .mut_or_insert_default()
        .value = quota;
    r.cpu
        .mut_or_insert_default()
        .period
        .mut_or_insert_default()
        .value = 100_000;
    u
}

fn resources_json(daemon: &Daemon, id: &str) -> Value {
    let path = daemon
        .dir
        .join("state/containers")
        .join(id)
        .join("resources.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn update_answers_and_unsolicited_updates_reach_the_container() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let mut script = Script::new("10", "updater");
    script.update = Some(Arc::new(|req: &api::UpdateContainerRequest| {
        let mut r = api::UpdateContainerResponse::new();
        r.update.push(cpu_update(&req.container.id, 25_000));
        r
    }));
    let plugin = TestPlugin::connect(&socket(&daemon), script).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod.create("updated", sleeper()).await.unwrap();
    pod.start(&id).await.unwrap();

    pod.daemon
        .runtime()
        .await
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: 256,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = resources_json(&pod.daemon, &id);
    assert_eq!(r["cpu"]["shares"], 256, "{r}");
    assert_eq!(r["cpu"]["quota"], 25_000, "the plugin's answer: {r}");
    plugin
        .wait_for("PostUpdateContainer updated", Duration::from_secs(2))
        .await;

    // An update the plugin asks for on its own.
    let mut req = api::UpdateContainersRequest::new();
    req.update.push(cpu_update(&id, 50_000));
    let answer = plugin
        .runtime
        .update_containers(ttrpc::context::with_duration(Duration::from_secs(5)), &req)
        .await
        .unwrap();
    assert!(answer.failed.is_empty());
    let r = resources_json(&pod.daemon, &id);
    assert_eq!(r["cpu"]["quota"], 50_000, "{r}");

    // The pod's resources: UpdatePodSandbox, then PostUpdatePodSandbox.
    pod.daemon
        .runtime()
        .await
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.id.clone(),
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 1024,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod_name = pod.config.metadata.as_ref().unwrap().name.clone();
    // Post* events are delivered after the call answers.
    plugin
        .wait_for(
            &format!("PostUpdatePodSandbox {pod_name}"),
            Duration::from_secs(2),
        )
        .await;
    let events = plugin.events();
    let tail: Vec<&str> = events
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            format!("UpdatePodSandbox(shares=1024) {pod_name}"),
            format!("PostUpdatePodSandbox {pod_name}")
        ],
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_reconnecting_plugin_is_resynchronized() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let first = TestPlugin::connect(&socket(&daemon), Script::new("10", "again")).await;
    let sock = socket(&daemon);
    let pod = Pod::new_on(daemon, json!({})).await;
    let id = pod.create("existing", sleeper()).await.unwrap();
    pod.start(&id).await.unwrap();
    drop(first);
    wait_unlisted(&pod.daemon).await;
    let again = TestPlugin::connect(&sock, Script::new("10", "again")).await;
    let (pods, containers) = again.synced.lock().unwrap().clone().unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].id, pod.id);
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, id);
    assert_eq!(containers[0].name, "existing");
    assert_eq!(
        containers[0].state.enum_value_or_default(),
        api::ContainerState::CONTAINER_RUNNING
    );
    assert!(!containers[0].args.is_empty());
    // And gets events again.
    pod.stop(&id, 0).await.unwrap();
    again
        .wait_for("StopContainer existing", Duration::from_secs(2))
        .await;
}

/// A node whose pods and containers do not fit one 4 MiB ttrpc message is
/// sent in several Synchronize messages (`more` on all but the last), and
/// the plugin gets all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_large_state_is_synchronized_in_several_messages() {
    let fixture = Fixture::new("");
    let daemon = fixture.daemon();
    let sock = socket(&daemon);
    let big = "x".repeat(450_000);
    let pod = Pod::new_on(daemon, json!({"annotations": {"big": big}})).await;
    let mut ids = vec![pod.id.clone()];
    for n in 0..7 {
        let sibling = pod
            .sibling(json!({
                "metadata": {"name": format!("big-{n}"), "uid": format!("big-uid-{n}")},
                "annotations": {"big": big}
            }))
            .await
            .unwrap();
        ids.push(sibling.id);
    }
    let plugin = TestPlugin::connect(&sock, Script::new("10", "big")).await;
    let messages: Vec<String> = plugin
        .events()
        .into_iter()
        .filter(|e| e.starts_with("Synchronize"))
        .collect();
    assert!(messages.len() >= 2, "{messages:?}");
    let (pods, _) = plugin.synced.lock().unwrap().clone().unwrap();
    let mut synced: Vec<String> = pods.iter().map(|p| p.id.clone()).collect();
    synced.sort();
    ids.sort();
    assert_eq!(synced, ids);
    assert!(pods.iter().all(|p| p.annotations["big"].len() == 450_000));
    for id in &ids[..] {
        if *id != pod.id {
            common::net::remove_sandbox(&pod.daemon, id).await;
        }
    }
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_registers_is_dropped_after_the_registration_timeout() {
    let fixture = Fixture::new("plugin_registration_timeout_ms = 300\n");
    let daemon = fixture.daemon();
    // Once the CRI answers, NRI is listening.
    nri_status(&daemon).await;
    // Connected, silent: no RegisterPlugin.
    let mut silent = tokio::net::UnixStream::connect(socket(&daemon))
        .await
        .unwrap();
    // The CRI is served meanwhile, and the plugin is not listed.
    let started = Instant::now();
    let status = nri_status(&daemon).await;
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(status["plugins"], json!([]), "{status}");
    // criusd hangs up once the timeout has passed.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        silent.read(&mut buf).await
    })
    .await
    .expect("criusd closes the connection");
    assert_eq!(read.unwrap(), 0, "EOF");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(
        daemon.log().contains("no registration within"),
        "{}",
        daemon.log()
    );
}
