//! The OCI runtime spec (`config.json`) of a container, built with
//! `oci-spec` from the image config and the CRI container config.
//!
//! kubelet's semantics: `command` replaces the image's ENTRYPOINT, `args` its
//! CMD (and a `command` alone drops CMD); the CRI's env overrides the
//! image's by name; `working_dir` overrides WORKDIR.

use super::ContainerError;
use super::devices::{self, DevicePlan};
use super::mounts::{self, RootPropagation};
use super::security;
use super::user::ResolvedUser;
use crate::cgroups::{Enforceable, Hierarchy};
use crate::cri;
use crate::image::manifest::RunConfig;
use crate::sandbox::SandboxRecord;
use oci_spec::runtime::{
    Linux, LinuxCpu, LinuxHugepageLimit, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Process, Root, Spec, User,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which PID namespace the container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespace {
    /// Its own (the CRI's CONTAINER).
    Own,
    /// An existing one: the pod's (POD) or another container's (TARGET).
    Join(PathBuf),
    /// The node's (NODE).
    Host,
}

/// Everything the spec is made of.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    pub image: &'a RunConfig,
    pub image_name: &'a str,
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    pub cgroups_path: &'a str,
    pub enforceable: Enforceable,
    /// The lowest oom_score_adj crius may set on this node.
    pub oom_score_adj_floor: i64,
    pub pid_namespace: PidNamespace,
    pub volume_options: mounts::VolumeOptions,
    /// What to mount instead of volumes' host paths, by index: idmapped
    /// copies, image volumes.
    pub volume_sources: &'a std::collections::BTreeMap<usize, mounts::VolumeSource>,
    /// CDI devices, applied last.
    pub cdi: &'a super::cdi::Injection,
    pub cdi_support: super::cdi::Support,
}

/// The process's argv under kubelet's command/args rules.
pub fn process_args(config: &cri::ContainerConfig, image: &RunConfig) -> Vec<String> {
    match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => config.command.iter().chain(&config.args).cloned().collect(),
        (true, false) => image
            .entrypoint
            .iter()
            .chain(&config.args)
            .cloned()
            .collect(),
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// HOSTNAME, then the image's env, then the CRI's, later names winning; a
/// PATH is always set.
pub fn environment(
    config: &cri::ContainerConfig,
    image: &RunConfig,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    };
    set("HOSTNAME", hostname);
    for entry in &image.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set(k, v);
    }
    for kv in &config.envs {
        set(&kv.key, &kv.value);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').expect("static");
        env.push((k.into(), v.into()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `requested` clamped to what this node lets crius set (root without
/// CAP_SYS_RESOURCE cannot go below its own value), logged when clamped.
pub fn clamp_oom_score_adj(id: &str, requested: i64, floor: i64) -> i64 {
    if requested < floor {
        tracing::info!(
            container = id,
            requested,
            used = floor,
            "oom_score_adj below criusd's own needs CAP_SYS_RESOURCE, which criusd lacks: clamped"
        );
        floor
    } else {
        requested
    }
}

/// The cgroup settings of CRI resources.
pub fn resources(
    r: &cri::LinuxContainerResources,
    node: Enforceable,
    field: &str,
) -> Result<LinuxResources, ContainerError> {
    let invalid = |what: String| ContainerError::Invalid(format!("{field}.{what}"));
    for (name, value) in [
        ("cpu_period", r.cpu_period),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if value < 0 {
            return Err(invalid(format!("{name} {value} is negative")));
        }
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(format!(
            "oom_score_adj {} is outside -1000..1000",
            r.oom_score_adj
        )));
    }
    let mut out = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    out.set_cpu(Some(cpu));
    let mut memory = LinuxMemory::default();
    if r.memory_limit_in_bytes > 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        if !node.swap_accounting {
            return Err(invalid(
                "memory_swap_limit_in_bytes: this node has no swap accounting (memory.memsw.* files)"
                    .into(),
            ));
        }
        memory.set_swap(Some(r.memory_swap_limit_in_bytes));
    } else if r.memory_limit_in_bytes > 0 && node.swap_accounting {
        // No swap on top of the memory limit, as kubelet expects.
        memory.set_swap(Some(r.memory_limit_in_bytes));
    }
    out.set_memory(Some(memory));
    if !r.hugepage_limits.is_empty() && !node.hugetlb {
        // kubelet sends a limit of 0 for every page size the node has; with
        // no controller to hold them, those mean nothing and are left out
        // (containerd's tolerate_missing_hugetlb_controller). A real limit
        // that cannot be enforced is refused.
        if let Some((i, h)) = r
            .hugepage_limits
            .iter()
            .enumerate()
            .find(|(_, h)| h.limit > 0)
        {
            return Err(ContainerError::Precondition(format!(
                "{field}.hugepage_limits[{i}]: a limit of {} bytes of {} pages cannot be \
                 enforced: this node has no hugetlb cgroup controller",
                h.limit, h.page_size
            )));
        }
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::info!("no hugetlb cgroup controller: zero hugepage limits are left out")
        });
    } else if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(h.page_size.clone());
                l.set_limit(h.limit as i64);
                l
            })
            .collect();
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        if node.hierarchy != Hierarchy::V2 {
            return Err(invalid(
                "unified: cgroup v2 settings, but this node uses cgroup v1".into(),
            ));
        }
        out.set_unified(Some(r.unified.clone()));
    }
    Ok(out)
}

fn namespace(kind: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(kind);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

/// The whole spec.
pub fn build(input: &SpecInput) -> Result<Spec, ContainerError> {
    let config = input.config;
    let sandbox = input.sandbox;
    let linux_config = config.linux.clone().unwrap_or_default();
    let sc = linux_config.security_context.clone().unwrap_or_default();
    let requested = linux_config.resources.clone().unwrap_or_default();

    let args = process_args(config, input.image);
    if args.is_empty() {
        return Err(ContainerError::Invalid(format!(
            "config.command: neither the config nor image {} gives a command to run",
            input.image_name
        )));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(ContainerError::Invalid(format!(
            "config.working_dir {cwd:?} must be an absolute path"
        )));
    }

    let (capabilities, cap_set) =
        security::capabilities(&sc, input.user.uid, security::held_capabilities())?;
    let mut user = User::default();
    user.set_uid(input.user.uid);
    user.set_gid(input.user.gid);
    user.set_additional_gids(Some(input.user.additional_gids.clone()));
    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(environment(config, input.image, &sandbox.hostname)));
    process.set_cwd(PathBuf::from(&cwd));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.no_new_privs));
    process.set_apparmor_profile(super::apparmor::profile_for(&sc)?);
    process.set_selinux_label(security::selinux_label(&sc));
    if linux_config.resources.is_some() {
        process.set_oom_score_adj(Some(clamp_oom_score_adj(
            input.id,
            requested.oom_score_adj,
            input.oom_score_adj_floor,
        ) as i32));
    }

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sc.readonly_rootfs));

    let (volumes, propagation) =
        mounts::volumes(&config.mounts, input.volume_options, input.volume_sources)?;
    let all_mounts = mounts::assemble(
        mounts::standard(sc.privileged),
        mounts::pod_files(sandbox, sc.readonly_rootfs),
        volumes,
    );

    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    match &input.pid_namespace {
        PidNamespace::Own => namespaces.push(namespace(LinuxNamespaceType::Pid, None)),
        PidNamespace::Join(path) => namespaces.push(namespace(LinuxNamespaceType::Pid, Some(path))),
        PidNamespace::Host => {}
    }
    for (kind, pin) in [
        (LinuxNamespaceType::Network, &sandbox.namespaces.network),
        (LinuxNamespaceType::Ipc, &sandbox.namespaces.ipc),
        (LinuxNamespaceType::Uts, &sandbox.namespaces.uts),
    ] {
        if let Some(path) = pin {
            namespaces.push(namespace(kind, Some(path)));
        }
    }
    if input.enforceable.hierarchy == Hierarchy::V2 {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    let id_maps = |maps: &[(u32, u32, u32)]| {
        maps.iter()
            .map(|&(inside, outside, size)| {
                LinuxIdMappingBuilder::default()
                    .container_id(inside)
                    .host_id(outside)
                    .size(size)
                    .build()
                    .expect("all fields set")
            })
            .collect::<Vec<_>>()
    };
    if let Some(userns) = &sandbox.namespaces.user {
        namespaces.push(namespace(LinuxNamespaceType::User, Some(userns)));
    }

    let DevicePlan {
        devices: device_nodes,
        rules,
    } = if sc.privileged {
        devices::all_host_devices()
    } else {
        devices::from_cri(&config.devices)?
    };
    let mut resources = resources(&requested, input.enforceable, "config.linux.resources")?;
    resources.set_devices(Some(
        std::iter::once(devices::deny_all()).chain(rules).collect(),
    ));

    let (masked, readonly) = security::masked_and_readonly(&sc);
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    linux.set_resources(Some(resources));
    linux.set_devices(Some(device_nodes));
    linux.set_seccomp(security::seccomp(&sc, &cap_set)?);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_sysctl(None);
    // The runtime joins the pod's user namespace; it still needs the maps
    // (runc derives the host ids of the container's root from them).
    let has_userns = sandbox.namespaces.user.is_some();
    linux.set_uid_mappings(has_userns.then(|| id_maps(&sandbox.namespaces.uid_map)));
    linux.set_gid_mappings(has_userns.then(|| id_maps(&sandbox.namespaces.gid_map)));
    linux.set_rootfs_propagation(match propagation {
        RootPropagation::Private => None,
        RootPropagation::Slave => Some("rslave".into()),
        RootPropagation::Shared => Some("rshared".into()),
    });

    let metadata = config.metadata.clone().unwrap_or_default();
    let pod = sandbox.metadata();
    let annotations: HashMap<String, String> = [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", metadata.name.as_str()),
        ("io.kubernetes.cri.sandbox-id", sandbox.id.as_str()),
        ("io.kubernetes.cri.sandbox-name", pod.name.as_str()),
        (
            "io.kubernetes.cri.sandbox-namespace",
            pod.namespace.as_str(),
        ),
        ("io.kubernetes.cri.sandbox-uid", pod.uid.as_str()),
        ("io.kubernetes.cri.image-name", input.image_name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(all_mounts));
    spec.set_hostname(
        sandbox
            .namespaces
            .uts
            .as_ref()
            .map(|_| sandbox.hostname.clone()),
    );
    spec.set_hooks(None);
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(linux));
    // After crius's own devices and mounts, as containerd applies them: a
    // CDI node or mount replaces one at the same path (also a privileged
    // container's copy of the host's /dev).
    input.cdi.apply(&mut spec, &input.cdi_support)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: &str) -> cri::ContainerConfig {
        serde_json::from_str(json).unwrap()
    }

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()],
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubelet() {
        let img = image();
        assert_eq!(process_args(&container("{}"), &img), ["/entry", "default"]);
        assert_eq!(
            process_args(&container(r#"{"args": ["x"]}"#), &img),
            ["/entry", "x"]
        );
        assert_eq!(
            process_args(&container(r#"{"command": ["/c"]}"#), &img),
            ["/c"]
        );
        assert_eq!(
            process_args(&container(r#"{"command": ["/c"], "args": ["y"]}"#), &img),
            ["/c", "y"]
        );
    }

    #[test]
    fn env_merges_by_name() {
        let env = environment(
            &container(r#"{"envs": [{"key": "B", "value": "cri"}, {"key": "C", "value": "c=1"}]}"#),
            &image(),
            "pod",
        );
        assert_eq!(
            env,
            ["HOSTNAME=pod", "PATH=/bin", "A=image", "B=cri", "C=c=1"]
        );
        let env = environment(&container("{}"), &RunConfig::default(), "h");
        assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")));
    }

    #[test]
    fn resources_map_and_validate() {
        let r: cri::LinuxContainerResources = serde_json::from_str(
            r#"{"cpu_shares": 512, "cpu_quota": 50000, "cpu_period": 100000, "memory_limit_in_bytes": 67108864, "cpuset_cpus": "0"}"#,
        )
        .unwrap();
        let v1 = Enforceable {
            hierarchy: Hierarchy::V1,
            swap_accounting: true,
            hugetlb: true,
        };
        let v2 = Enforceable {
            hierarchy: Hierarchy::V2,
            ..v1
        };
        let out = resources(&r, v1, "f").unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["cpu"]["shares"], 512);
        assert_eq!(json["cpu"]["quota"], 50000);
        assert_eq!(json["memory"]["limit"], 67108864);
        assert_eq!(json["memory"]["swap"], 67108864);
        let unified: cri::LinuxContainerResources =
            serde_json::from_str(r#"{"unified": {"memory.high": "1M"}}"#).unwrap();
        let err = resources(&unified, v1, "f").unwrap_err();
        assert!(err.to_string().contains("f.unified"));
        let bad: cri::LinuxContainerResources =
            serde_json::from_str(r#"{"oom_score_adj": 5000}"#).unwrap();
        assert!(resources(&bad, v2, "f").is_err());
        // kubelet's zero hugepage limits without a hugetlb controller.
        let huge: cri::LinuxContainerResources = serde_json::from_str(
            r#"{"hugepage_limits": [{"page_size": "2MB", "limit": 0}, {"page_size": "1GB", "limit": 0}]}"#,
        )
        .unwrap();
        let no_hugetlb = Enforceable {
            hugetlb: false,
            ..v1
        };
        let out = resources(&huge, no_hugetlb, "f").unwrap();
        assert!(out.hugepage_limits().is_none());
        let out = resources(&huge, v1, "f").unwrap();
        assert_eq!(out.hugepage_limits().as_ref().unwrap().len(), 2);
        let real: cri::LinuxContainerResources = serde_json::from_str(
            r#"{"hugepage_limits": [{"page_size": "2MB", "limit": 0}, {"page_size": "1GB", "limit": 1073741824}]}"#,
        )
        .unwrap();
        let err = resources(&real, no_hugetlb, "f").unwrap_err();
        assert!(matches!(err, ContainerError::Precondition(_)));
        assert!(err.to_string().contains("f.hugepage_limits[1]"), "{err}");
        assert_eq!(clamp_oom_score_adj("c", -998, -500), -500);
        assert_eq!(clamp_oom_score_adj("c", 1000, -500), 1000);
    }
}
