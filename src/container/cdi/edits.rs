//! Applying CDI container edits to the OCI spec crius built, in the order
//! the reference implementation uses: env (replacing a variable of the same
//! name), device nodes (replacing a node at the same path, each with a
//! device-cgroup allow rule), net devices, mounts (replacing a mount at the
//! same destination, then all mounts ordered parents first), hooks, Intel
//! RDT and additional GIDs.
//!
//! What the node or the runtime cannot carry out is refused here rather
//! than left for the runtime to ignore silently.

use super::super::ContainerError;
use super::nodes::device_node;
use super::schema::{Edits, IntelRdt, MountEdit};
use oci_spec::runtime::{Hook, Hooks, LinuxIntelRdt, LinuxNetDevice, Mount, Spec};
use std::path::{Path, PathBuf};

/// What the node and the container's runtime handler can do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Support {
    /// The runtime's features document lists linux.netDevices.
    pub net_devices: bool,
    /// resctrl is mounted (Intel RDT).
    pub intel_rdt: bool,
    /// The runtime handles intelRdt.schemata / enableMonitoring.
    pub intel_rdt_schemata: bool,
    pub intel_rdt_monitoring: bool,
    /// The pod has its own user namespace.
    pub user_namespace: bool,
}

/// Where an edit comes from, for messages.
pub struct Source<'a> {
    /// The request's field, e.g. `config.CDI_devices[0]`.
    pub field: &'a str,
    pub device: &'a str,
    pub file: &'a Path,
}

impl Source<'_> {
    fn error(&self, what: impl std::fmt::Display) -> String {
        format!(
            "{}: CDI device {:?} (spec {}): {what}",
            self.field,
            self.device,
            self.file.display()
        )
    }
}

/// Applies `edits` in order to `spec`.
pub fn apply(
    spec: &mut Spec,
    edits: &[(Source, &Edits)],
    support: &Support,
) -> Result<(), ContainerError> {
    for (source, e) in edits {
        refuse_unsupported(source, e, support)?;
    }
    let mut process = spec.process().clone().unwrap_or_default();
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    let (mut has_hooks, mut added_mounts) = (spec.hooks().is_some(), false);

    for (source, e) in edits {
        let mut env = process.env().clone().unwrap_or_default();
        for var in &e.env {
            let key = var.split_once('=').map_or(var.as_str(), |(k, _)| k);
            match env
                .iter_mut()
                .find(|v| v.split_once('=').is_some_and(|(k, _)| k == key))
            {
                Some(slot) => *slot = var.clone(),
                None => env.push(var.clone()),
            }
        }
        process.set_env(Some(env));

        let (uid, gid) = (process.user().uid(), process.user().gid());
        let mut devices = linux.devices().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        for node in &e.device_nodes {
            let (device, rule) = device_node(node, uid, gid)
                .map_err(|e| ContainerError::Precondition(source.error(e)))?;
            devices.retain(|d| d.path() != device.path());
            devices.push(device);
            rules.extend(rule);
        }
        resources.set_devices(Some(rules));
        linux.set_resources(Some(resources));
        linux.set_devices(Some(devices));

        if !e.net_devices.is_empty() {
            let mut net = linux.net_devices().clone().unwrap_or_default();
            for d in &e.net_devices {
                let mut device = LinuxNetDevice::default();
                device.set_name(Some(d.name.clone()));
                net.insert(d.host_interface_name.clone(), device);
            }
            linux.set_net_devices(Some(net));
        }

        for m in &e.mounts {
            // A missing bind source would only surface as runc's failure.
            let bind = m.kind == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
            if bind && !Path::new(&m.host_path).exists() {
                return Err(ContainerError::Precondition(source.error(format!(
                    "mounts: hostPath {:?} does not exist on this node",
                    m.host_path
                ))));
            }
            mounts.retain(|have| have.destination() != Path::new(&m.container_path));
            mounts.push(mount(m));
            added_mounts = true;
        }

        for h in &e.hooks {
            let mut hook = Hook::default();
            hook.set_path(PathBuf::from(&h.path));
            hook.set_args((!h.args.is_empty()).then(|| h.args.clone()));
            hook.set_env((!h.env.is_empty()).then(|| h.env.clone()));
            hook.set_timeout(h.timeout);
            add_hook(&mut hooks, &h.hook_name, hook);
            has_hooks = true;
        }

        if let Some(rdt) = &e.intel_rdt {
            linux.set_intel_rdt(Some(intel_rdt(rdt)));
        }

        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for &g in &e.additional_gids {
            if g != 0 && !gids.contains(&g) {
                gids.push(g);
            }
        }
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    if added_mounts {
        // Parents before children; stable, so equal depths keep their order.
        mounts.sort_by_key(|m| depth(m.destination()));
    }
    spec.set_process(Some(process));
    spec.set_linux(Some(linux));
    spec.set_mounts(Some(mounts));
    spec.set_hooks(has_hooks.then_some(hooks));
    Ok(())
}

fn refuse_unsupported(source: &Source, e: &Edits, s: &Support) -> Result<(), ContainerError> {
    if !e.net_devices.is_empty() && !s.net_devices {
        return Err(ContainerError::Precondition(source.error(
            "netDevices: the pod's runtime handler does not support linux.netDevices (not in its features document)",
        )));
    }
    if let Some(rdt) = &e.intel_rdt {
        if !s.intel_rdt {
            return Err(ContainerError::Precondition(source.error(
                "intelRdt: this node has no resctrl filesystem mounted (Intel RDT)",
            )));
        }
        if (rdt.schemata.is_some() && !s.intel_rdt_schemata)
            || (rdt.enable_monitoring && !s.intel_rdt_monitoring)
        {
            return Err(ContainerError::Precondition(source.error(
                "intelRdt.schemata/enableMonitoring: the pod's runtime handler does not support them (not in its features document)",
            )));
        }
    }
    if !e.mounts.is_empty() && s.user_namespace {
        return Err(ContainerError::Unsupported(source.error(
            "mounts in a pod with a user namespace would need idmapped mounts, which crius does not make for CDI mounts",
        )));
    }
    Ok(())
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count()
}

fn mount(m: &MountEdit) -> Mount {
    let mut out = Mount::default();
    out.set_destination(PathBuf::from(&m.container_path));
    out.set_source(Some(PathBuf::from(&m.host_path)));
    out.set_typ((!m.kind.is_empty()).then(|| m.kind.clone()));
    out.set_options((!m.options.is_empty()).then(|| m.options.clone()));
    out
}

#[allow(deprecated)] // prestart: still a valid CDI hook name
fn add_hook(hooks: &mut Hooks, name: &str, hook: Hook) {
    let list = match name {
        "prestart" => hooks.prestart_mut(),
        "createRuntime" => hooks.create_runtime_mut(),
        "createContainer" => hooks.create_container_mut(),
        "startContainer" => hooks.start_container_mut(),
        "poststart" => hooks.poststart_mut(),
        // The schema allows only these names.
        _ => hooks.poststop_mut(),
    };
    list.get_or_insert_with(Vec::new).push(hook);
}

#[allow(deprecated)] // enableCMT/enableMBM: specs before 1.1.0 still carry them
fn intel_rdt(r: &IntelRdt) -> LinuxIntelRdt {
    let mut out = LinuxIntelRdt::default();
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    out.set_clos_id(text(&r.clos_id));
    out.set_l3_cache_schema(text(&r.l3_cache_schema));
    out.set_mem_bw_schema(text(&r.mem_bw_schema));
    out.set_schemata(r.schemata.clone());
    out.set_enable_monitoring(r.enable_monitoring.then_some(true));
    out.set_enable_cmt(r.enable_cmt.then_some(true));
    out.set_enable_mbm(r.enable_mbm.then_some(true));
    out
}

/// Whether resctrl (Intel RDT) is mounted on this node.
pub fn resctrl_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("resctrl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Process, User};

    fn edits(json: &str) -> Edits {
        serde_json::from_str(json).unwrap()
    }

    /// A spec as crius builds it: a user, env, /dev/null and two mounts.
    fn base() -> Spec {
        let mut spec = Spec::default();
        let mut user = User::default();
        user.set_uid(1000);
        user.set_gid(1000);
        user.set_additional_gids(Some(vec![5]));
        let mut process = Process::default();
        process.set_user(user);
        process.set_env(Some(vec!["PATH=/bin".into(), "A=crius".into()]));
        spec.set_process(Some(process));
        spec.set_hooks(None);
        spec
    }

    fn run(spec: &mut Spec, e: &[Edits], support: Support) -> Result<(), ContainerError> {
        let file = PathBuf::from("/etc/cdi/v.json");
        let list: Vec<(Source, &Edits)> = e
            .iter()
            .map(|e| {
                let source = Source {
                    field: "config.CDI_devices[0]",
                    device: "v.com/c=d",
                    file: &file,
                };
                (source, e)
            })
            .collect();
        apply(spec, &list, &support)
    }

    #[test]
    fn env_replaces_by_name_and_appends() {
        let mut spec = base();
        run(
            &mut spec,
            &[
                edits(r#"{"env": ["A=cdi", "B=1"]}"#),
                edits(r#"{"env": ["B=2"]}"#),
            ],
            Support::default(),
        )
        .unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "A=cdi", "B=2"]);
    }

    #[test]
    fn device_nodes_are_filled_from_the_host_and_allowed() {
        let mut spec = base();
        let e = edits(
            r#"{"deviceNodes": [
                {"path": "/dev/fake0", "hostPath": "/dev/null", "permissions": "rw"},
                {"path": "/dev/zero", "uid": 0, "gid": 7, "fileMode": 384},
                {"path": "/dev/absent", "type": "c", "major": 240, "minor": 1, "permissions": "none"},
                {"path": "/dev/pipe", "type": "p", "hostPath": "/no/such"}
            ]}"#,
        );
        run(&mut spec, &[e], Support::default()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().as_ref().unwrap();
        let d = &devices[0];
        assert_eq!(d.path(), Path::new("/dev/fake0"));
        assert_eq!((d.typ(), d.major(), d.minor()), (LinuxDeviceType::C, 1, 3));
        assert_eq!(d.file_mode(), Some(0o666));
        assert_eq!((d.uid(), d.gid()), (Some(1000), Some(1000)));
        let zero = &devices[1];
        assert_eq!((zero.major(), zero.minor()), (1, 5));
        assert_eq!(
            (zero.uid(), zero.gid(), zero.file_mode()),
            (Some(0), Some(7), Some(0o600))
        );
        // Fully given: the host node need not exist.
        assert_eq!((devices[2].major(), devices[2].minor()), (240, 1));
        assert_eq!(devices[3].typ(), LinuxDeviceType::P);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        let access: Vec<_> = rules
            .iter()
            .map(|r| (r.major(), r.minor(), r.access().clone().unwrap()))
            .collect();
        // A fifo gets no cgroup rule.
        assert_eq!(
            access,
            [
                (Some(1), Some(3), "rw".to_string()),
                (Some(1), Some(5), "rwm".to_string()),
                (Some(240), Some(1), String::new())
            ]
        );
    }

    #[test]
    fn a_device_node_replaces_one_at_its_path() {
        let mut spec = base();
        let mut existing = LinuxDevice::default();
        existing.set_path("/dev/fake0".into());
        existing.set_major(9);
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_devices(Some(vec![existing]));
        spec.set_linux(Some(linux));
        run(
            &mut spec,
            &[edits(
                r#"{"deviceNodes": [{"path": "/dev/fake0", "hostPath": "/dev/null"}]}"#,
            )],
            Support::default(),
        )
        .unwrap();
        let devices = spec.linux().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].major(), 1);
    }

    #[test]
    fn bad_device_nodes_name_the_device_and_file() {
        for (json, want) in [
            (
                r#"{"deviceNodes": [{"path": "/dev/nonexistent-cdi"}]}"#,
                "host node \"/dev/nonexistent-cdi\"",
            ),
            (
                r#"{"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "b"}]}"#,
                "is \"c\"",
            ),
            (
                r#"{"deviceNodes": [{"path": "/dev/x", "hostPath": "/etc/hostname"}]}"#,
                "not a device node",
            ),
        ] {
            let err = run(&mut base(), &[edits(json)], Support::default()).unwrap_err();
            assert!(matches!(err, ContainerError::Precondition(_)));
            let msg = err.to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(
                msg.starts_with(
                    "config.CDI_devices[0]: CDI device \"v.com/c=d\" (spec /etc/cdi/v.json)"
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn mounts_replace_by_destination_and_sort_parents_first() {
        let mut spec = base();
        let mut m = Mount::default();
        m.set_destination("/usr/lib/vendor".into());
        m.set_source(Some("/old".into()));
        let mut proc_mount = Mount::default();
        proc_mount.set_destination("/proc".into());
        spec.set_mounts(Some(vec![proc_mount, m]));
        let e = edits(
            r#"{"mounts": [
                {"hostPath": "/etc", "containerPath": "/a/b/c", "type": "bind", "options": ["ro", "rbind"]},
                {"hostPath": "/usr", "containerPath": "/usr/lib/vendor", "options": ["bind"]},
                {"hostPath": "tmpfs", "containerPath": "/a", "type": "tmpfs"}
            ]}"#,
        );
        run(&mut spec, &[e], Support::default()).unwrap();
        let mounts = spec.mounts().clone().unwrap();
        let dests: Vec<_> = mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(dests, ["/proc", "/a", "/a/b/c", "/usr/lib/vendor"]);
        assert_eq!(mounts[3].source().as_deref(), Some(Path::new("/usr")));
        assert_eq!(mounts[3].typ(), &None);
        assert_eq!(mounts[2].typ().as_deref(), Some("bind"));
        assert_eq!(mounts[2].options().clone().unwrap(), ["ro", "rbind"]);
        assert_eq!(mounts[1].typ().as_deref(), Some("tmpfs"));

        let missing = edits(
            r#"{"mounts": [{"hostPath": "/no/such/dir", "containerPath": "/x", "options": ["rbind"]}]}"#,
        );
        let err = run(&mut base(), &[missing], Support::default()).unwrap_err();
        assert!(matches!(err, ContainerError::Precondition(_)), "{err}");
        assert!(
            err.to_string().contains("\"/no/such/dir\" does not exist"),
            "{err}"
        );
    }

    #[test]
    #[allow(deprecated)]
    fn hooks_go_to_their_lists() {
        let mut spec = base();
        let mut json = String::from(r#"{"hooks": ["#);
        for (i, name) in super::super::schema::HOOK_NAMES.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                r#"{{"hookName": "{name}", "path": "/bin/{name}", "args": ["{name}", "x"], "env": ["H=1"], "timeout": 3}}"#
            ));
        }
        json.push_str("]}");
        run(&mut spec, &[edits(&json)], Support::default()).unwrap();
        let hooks = spec.hooks().clone().unwrap();
        for (name, list) in [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ] {
            let list = list.clone().unwrap();
            assert_eq!(list.len(), 1, "{name}");
            assert_eq!(list[0].path(), &PathBuf::from(format!("/bin/{name}")));
            assert_eq!(list[0].args().clone().unwrap(), [name, "x"]);
            assert_eq!(list[0].env().clone().unwrap(), ["H=1"]);
            assert_eq!(list[0].timeout(), Some(3));
        }
        // No hooks asked for: none written.
        let mut plain = base();
        run(
            &mut plain,
            &[edits(r#"{"env": ["A=1"]}"#)],
            Support::default(),
        )
        .unwrap();
        assert!(plain.hooks().is_none());
    }

    #[test]
    fn additional_gids_skip_zero_and_duplicates() {
        let mut spec = base();
        run(
            &mut spec,
            &[edits(r#"{"additionalGids": [0, 5, 44, 44]}"#)],
            Support::default(),
        )
        .unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!(user.additional_gids().clone().unwrap(), [5, 44]);
    }

    #[test]
    fn intel_rdt_and_net_devices_need_support() {
        let rdt = edits(
            r#"{"intelRdt": {"closID": "gpu", "l3CacheSchema": "L3:0=ff", "enableCMT": true}}"#,
        );
        let err = run(&mut base(), std::slice::from_ref(&rdt), Support::default()).unwrap_err();
        assert!(err.to_string().contains("resctrl"), "{err}");
        let mut spec = base();
        let support = Support {
            intel_rdt: true,
            ..Default::default()
        };
        run(&mut spec, &[rdt], support).unwrap();
        let json = serde_json::to_value(spec.linux().as_ref().unwrap().intel_rdt()).unwrap();
        assert_eq!(json["closID"], "gpu");
        assert_eq!(json["l3CacheSchema"], "L3:0=ff");
        #[allow(deprecated)]
        let cmt = spec
            .linux()
            .as_ref()
            .unwrap()
            .intel_rdt()
            .as_ref()
            .unwrap()
            .enable_cmt();
        assert_eq!(cmt, &Some(true));
        let schemata = edits(r#"{"intelRdt": {"schemata": ["L3:0=f"]}}"#);
        let err = run(&mut base(), std::slice::from_ref(&schemata), support).unwrap_err();
        assert!(err.to_string().contains("schemata"), "{err}");

        let net = edits(r#"{"netDevices": [{"hostInterfaceName": "eth9", "name": "net1"}]}"#);
        let err = run(&mut base(), std::slice::from_ref(&net), Support::default()).unwrap_err();
        assert!(matches!(err, ContainerError::Precondition(_)), "{err}");
        let mut spec = base();
        let support = Support {
            net_devices: true,
            ..Default::default()
        };
        run(&mut spec, &[net], support).unwrap();
        let json = serde_json::to_value(spec.linux().as_ref().unwrap()).unwrap();
        assert_eq!(json["netDevices"]["eth9"]["name"], "net1");
    }

    #[test]
    fn mounts_in_a_user_namespace_are_refused() {
        let support = Support {
            user_namespace: true,
            ..Default::default()
        };
        let e = edits(r#"{"mounts": [{"hostPath": "/opt", "containerPath": "/opt"}]}"#);
        let err = run(&mut base(), &[e], support).unwrap_err();
        assert!(matches!(err, ContainerError::Unsupported(_)), "{err}");
        // Device nodes are fine there (the runtime bind-mounts them).
        let e = edits(r#"{"deviceNodes": [{"path": "/dev/fake0", "hostPath": "/dev/null"}]}"#);
        run(&mut base(), &[e], support).unwrap();
    }
}
