//! CDI devices on a real criusd and runc: a spec in a private spec dir
//! gives a busybox container a device node, an env var and a bind mount;
//! unknown and malformed names are InvalidArgument naming them; a spec
//! written while criusd runs is used by the next CreateContainer.

mod common;

use common::pods::Pod;
use common::{CleanupGuard, Daemon};
use crius::cri;
use serde_json::json;
use tonic::Code;

const SPEC_YAML: &str = "\
cdiVersion: 0.6.0
kind: crius.test/fake
containerEdits:
  env: [CRIUS_CDI_SPEC=1]
devices:
  - name: one
    containerEdits:
      env: [CRIUS_CDI=one]
      deviceNodes:
        - path: /dev/fake0
          hostPath: /dev/null
          permissions: rw
      mounts:
        - hostPath: HOST_DIR
          containerPath: /cdi-data
          type: bind
          options: [rbind, ro]
";

/// Runs `sh -c script` in `id`; (exit code, stdout).
async fn sh(pod: &Pod, id: &str, script: &str) -> (i32, String) {
    let (code, out, err) = pod.exec(id, &["sh", "-c", script]).await;
    (code, format!("{out}{err}"))
}

async fn create_with(
    pod: &Pod,
    name: &str,
    extra: serde_json::Value,
) -> Result<String, tonic::Status> {
    let mut config = json!({"command": ["sleep", "300"]});
    common::pods::merge(&mut config, extra);
    pod.create(name, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn cdi_devices_are_injected_and_new_specs_are_seen() {
    let tmp = tempfile::Builder::new()
        .prefix("crius-it-")
        .tempdir()
        .unwrap();
    let _cleanup = CleanupGuard(tmp.path().to_path_buf());
    let (static_dir, dynamic_dir) = (
        tmp.path().join("cdi-static"),
        tmp.path().join("cdi-dynamic"),
    );
    std::fs::create_dir_all(&static_dir).unwrap();
    let host_dir = tmp.path().join("host-data");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "from-host\n").unwrap();
    std::fs::write(
        static_dir.join("crius-test.yaml"),
        SPEC_YAML.replace("HOST_DIR", &host_dir.display().to_string()),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("config.toml"),
        format!(
            "[network.builtin]\nenabled = false\n[runtime]\ncdi_spec_dirs = [{:?}, {:?}]\n",
            static_dir.display().to_string(),
            dynamic_dir.display().to_string()
        ),
    )
    .unwrap();
    let pod = Pod::new_on(Daemon::start_in(tmp.path(), &[]), json!({})).await;

    let id = create_with(
        &pod,
        "cdi-one",
        json!({"CDI_devices": [{"name": "crius.test/fake=one"}]}),
    )
    .await
    .unwrap();
    pod.start(&id).await.unwrap();
    let (code, out) = sh(
        &pod,
        &id,
        "test -c /dev/fake0 && echo written > /dev/fake0 && stat -c %t:%T /dev/fake0",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "1:3"), "{out}");
    let (_, env) = sh(&pod, &id, "env").await;
    assert!(env.lines().any(|l| l == "CRIUS_CDI=one"), "{env}");
    assert!(env.lines().any(|l| l == "CRIUS_CDI_SPEC=1"), "{env}");
    let (code, out) = sh(&pod, &id, "cat /cdi-data/hello").await;
    assert_eq!((code, out.as_str()), (0, "from-host\n"));
    let (code, _) = sh(&pod, &id, "touch /cdi-data/new").await;
    assert_ne!(code, 0, "the CDI mount is read-only");
    assert!(!host_dir.join("new").exists());

    // Unknown and malformed names: InvalidArgument naming field and device.
    let err = create_with(
        &pod,
        "cdi-unknown",
        json!({"CDI_devices": [{"name": "crius.test/fake=two"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("config.CDI_devices[0]"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("crius.test/fake=two"),
        "{}",
        err.message()
    );
    let err = create_with(
        &pod,
        "cdi-malformed",
        json!({"CDI_devices": [{"name": "fake0"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"fake0\""), "{}", err.message());

    // A spec written now, in a dir that did not exist at start, as JSON;
    // asked for through a device plugin's annotation.
    std::fs::create_dir_all(&dynamic_dir).unwrap();
    std::fs::write(
        dynamic_dir.join("late.json"),
        r#"{"cdiVersion": "0.5.0", "kind": "crius.test/fake", "devices": [{"name": "two", "containerEdits": {"env": ["CRIUS_CDI=two"], "deviceNodes": [{"path": "/dev/fake1", "hostPath": "/dev/zero"}]}}]}"#,
    )
    .unwrap();
    let id2 = create_with(
        &pod,
        "cdi-two",
        json!({"annotations": {"cdi.k8s.io/test_two": "crius.test/fake=two"}}),
    )
    .await
    .unwrap();
    pod.start(&id2).await.unwrap();
    let (code, out) = sh(
        &pod,
        &id2,
        "test -c /dev/fake1 && head -c 3 /dev/fake1 | od -An -tx1 && echo $CRIUS_CDI",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["00", "00", "00", "two"]
    );

    // A privileged container gets the host's /dev and the CDI node too.
    let id3 = create_with(
        &pod,
        "cdi-privileged",
        json!({"CDI_devices": [{"name": "crius.test/fake=one"}],
               "linux": {"security_context": {"privileged": true}}}),
    )
    .await
    .unwrap();
    pod.start(&id3).await.unwrap();
    let (code, out) = sh(
        &pod,
        &id3,
        "test -c /dev/fake0 && test -c /dev/null && echo ok",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "ok"), "{out}");

    // A spec that does not parse is logged and its devices are unknown;
    // the others still work.
    std::fs::write(
        dynamic_dir.join("broken.yaml"),
        "cdiVersion: 0.6.0\nkind: crius.test/broken\ndevices: [{name: x, containerEdits: {env: [NOEQUALS]}}]\n",
    )
    .unwrap();
    let err = create_with(
        &pod,
        "cdi-broken",
        json!({"CDI_devices": [{"name": "crius.test/broken=x"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("broken.yaml"), "{}", err.message());
    let log = pod.daemon.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("CDI spec file left out")
            && l.contains("broken.yaml")),
        "{log}"
    );
    create_with(
        &pod,
        "cdi-after-broken",
        json!({"CDI_devices": [{"name": "crius.test/fake=two"}]}),
    )
    .await
    .unwrap();

    // Verbose Status lists the dirs and the devices.
    let status = pod
        .daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let cdi: serde_json::Value = serde_json::from_str(&status.info["cdi"]).unwrap();
    assert_eq!(
        cdi["devices"],
        json!(["crius.test/fake=one", "crius.test/fake=two"])
    );
    assert_eq!(cdi["specDirs"][1], json!(dynamic_dir));

    pod.remove_pod().await;
}
