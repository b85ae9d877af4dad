//! CreateContainer: the rootfs (idmapped in a user-namespaced pod), the OCI
//! spec, and `<runtime> create` run by a new shim. Any failure undoes all of
//! it; the record is written last.

use super::mounts::{self, VolumeSource};
use super::oci_runtime::OciRuntime;
use super::{
    ContainerError, ContainerRecord, ContainerState, Containers, CreateRequest, cdi, log_path,
    record, shim, spec, user,
};
use crate::checkpoint::{CheckpointError, restore};
use crate::cri;
use crate::events::{Event, EventKind};
use crate::handlers::HandlerInfo;
use crate::idmap;
use crate::image::ImageError;
use crate::metrics::daemon::{self as metrics, Phase};
use crate::sandbox::SandboxRecord;
use crate::store::Table;
use crius_shim::protocol::{RestoreFrom, ShimConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the API server's validation would refuse and crius cannot carry out
/// safely: a log path that leaves the pod's log directory, environment
/// variables no process can receive.
fn check_config(config: &cri::ContainerConfig) -> Result<(), ContainerError> {
    let invalid = |what: String| Err(ContainerError::Invalid(what));
    let log = Path::new(&config.log_path);
    if log.is_absolute()
        || log
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || config.log_path.contains('\0')
    {
        return invalid(format!(
            "config.log_path {:?} must be a relative path inside the pod's log_directory (no '..')",
            config.log_path
        ));
    }
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) {
            return invalid(format!(
                "config.envs[{i}].key {:?} is not a variable name (empty, or with '=' or NUL)",
                kv.key
            ));
        }
        if kv.value.contains('\0') {
            return invalid(format!(
                "config.envs[{i}].value of {:?} contains NUL",
                kv.key
            ));
        }
    }
    Ok(())
}

/// A failed build, and the container as NRI plugins saw it if they did.
/// What CreateContainer's image names: an image to run, or a checkpoint
/// (unpacked into the container's dir) to restore.
enum Source {
    Image(Box<crate::image::HeldImage>),
    Checkpoint(restore::Checkpoint),
}

struct BuildError {
    error: ContainerError,
    adjusted: Option<crate::nri::api::Container>,
}

impl Containers {
    /// CreateContainer: the rootfs, the bundle, and `<runtime> create` run
    /// by a new shim. Any failure undoes all of it.
    pub fn create(&self, request: CreateRequest) -> Result<ContainerRecord, ContainerError> {
        let config = request.config;
        let sandbox = request.sandbox;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| ContainerError::Invalid("config.metadata is required".into()))?;
        if meta.name.is_empty() {
            return Err(ContainerError::Invalid(
                "config.metadata.name is empty".into(),
            ));
        }
        check_config(&config)?;
        // Before anything is made: an unknown device is the caller's error.
        let cdi = self.cdi.resolve(&config)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(ContainerError::Invalid(
                "config.image.image is empty".into(),
            ));
        }
        let id = crate::ids::new_id();
        let dir = self.root.join(&id);
        // A checkpoint (an archive, or an image made from one) as the
        // image: unpacked into the dir, which goes again on any failure
        // before `build`. An image is held until the rootfs's own lease
        // holds its snapshots: a removal meanwhile takes its record, not
        // its content.
        let source = match restore::archive(&image_name) {
            Some(archive) => Source::Checkpoint(self.unpack_checkpoint(&archive, &dir, sandbox)?),
            None => {
                let held = self.images.hold_image(&image_name)?.ok_or_else(|| {
                    ContainerError::NotFound(format!(
                        "image {image_name:?} (config.image.image) is not present; pull it first"
                    ))
                })?;
                if restore::is_checkpoint_image(&held.record) {
                    Source::Checkpoint(self.unpack_checkpoint_image(
                        &held,
                        &image_name,
                        &dir,
                        sandbox,
                    )?)
                } else {
                    Source::Image(Box::new(held))
                }
            }
        };
        let (held, config, checkpoint) = match source {
            Source::Image(held) => (*held, config, None),
            Source::Checkpoint(checkpoint) => match self.checkpoint_image(&checkpoint, &image_name)
            {
                Ok((held, image)) => {
                    let config = restore::config_for(&config, &image, &checkpoint);
                    (held, config, Some(checkpoint))
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            },
        };
        let undo_unpack = || {
            if checkpoint.is_some() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        };
        let name = format!("{}_{}_{}", meta.name, sandbox.name, meta.attempt);
        {
            let mut names = self.names.lock().expect("container names");
            if let Some(existing) = names.get(&name) {
                undo_unpack();
                return Err(ContainerError::Exists {
                    name,
                    id: existing.clone(),
                });
            }
            names.insert(name.clone(), id.clone());
        }
        let runtime = OciRuntime {
            binary: request.handler.path.clone().unwrap_or_default(),
            root: self.runtime_state.join(&request.handler.name),
            // With the systemd driver, cgroupsPath is "slice:prefix:name".
            args: if self.cgroups.driver == crate::cgroups::Driver::Systemd {
                vec!["--systemd-cgroup".to_string()]
            } else {
                Vec::new()
            },
        };
        let result = self.build(
            &id,
            &name,
            &dir,
            &config,
            sandbox,
            &held.record,
            &runtime,
            request.handler,
            &cdi,
            checkpoint.as_ref(),
        );
        drop(held);
        match &result {
            Ok(record) => self.nri.post_create_container(sandbox, record),
            Err(e) => {
                if let Some(container) = &e.adjusted {
                    self.nri.undo_create_container(sandbox, container.clone())
                }
            }
        }
        let result = result.map_err(|e| e.error);
        if result.is_err() {
            let _ = runtime.delete(&id);
            idmap::unmount_all_under(&dir);
            let _ = self.images.remove_rootfs(&id);
            let _ = std::fs::remove_dir_all(&dir);
            self.names.lock().expect("container names").remove(&name);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        id: &str,
        name: &str,
        dir: &Path,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        image: &crate::image::record::ImageRecord,
        runtime: &OciRuntime,
        handler: &HandlerInfo,
        cdi: &cdi::Injection,
        checkpoint: Option<&restore::Checkpoint>,
    ) -> Result<ContainerRecord, Box<BuildError>> {
        let mut adjusted = None;
        self.build_adjusted(
            id,
            name,
            dir,
            config,
            sandbox,
            image,
            runtime,
            handler,
            cdi,
            checkpoint,
            &mut adjusted,
        )
        .map_err(|error| Box::new(BuildError { error, adjusted }))
    }

    /// `build`; `adjusted` is set once NRI plugins have adjusted the
    /// container, so that a later failure is reported to them.
    #[allow(clippy::too_many_arguments)]
    fn build_adjusted(
        &self,
        id: &str,
        name: &str,
        dir: &Path,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        image: &crate::image::record::ImageRecord,
        runtime: &OciRuntime,
        handler: &HandlerInfo,
        cdi: &cdi::Injection,
        checkpoint: Option<&restore::Checkpoint>,
        adjusted: &mut Option<crate::nri::api::Container>,
    ) -> Result<ContainerRecord, ContainerError> {
        let io = |what: &str, e: std::io::Error| ContainerError::Runtime {
            id: id.to_string(),
            reason: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        self.absent_sources.create_missing(&config.mounts)?;
        // In a pod with its own user namespace, the container sees its
        // rootfs and volumes through idmapped mounts owned by the pod's root.
        let userns = sandbox.namespaces.user.as_deref();
        let started = Instant::now();
        let rootfs = self.images.mount_rootfs(
            id,
            image,
            userns.map(|u| (u, sandbox.namespaces.root_ids())),
        )?;
        metrics::pod_phase(Phase::Rootfs, started.elapsed());
        if let Some(checkpoint) = checkpoint {
            let upper = self.images.writable_layer(id).ok_or_else(|| {
                ContainerError::Precondition(
                    "the rootfs has no writable layer to restore into".into(),
                )
            })?;
            restore::apply_rootfs(checkpoint, &upper).map_err(checkpoint_error)?;
        }
        let mut volume_sources = match userns {
            Some(userns) => self.idmapped_volumes(id, dir, config, sandbox, userns)?,
            None => Default::default(),
        };
        volume_sources.extend(self.image_volumes(config, sandbox)?);
        let sc = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let user = user::resolve(&rootfs, Some(&sc), &image.run_config().user)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let (pid_namespace, shares_pid_namespace) = self.pid_namespace(&sc, sandbox)?;
        let cgroup = self.cgroups.container(
            &sandbox
                .config
                .linux
                .clone()
                .unwrap_or_default()
                .cgroup_parent,
            id,
        );
        let cdi_support = cdi::Support {
            net_devices: handler.features.net_devices,
            intel_rdt: !cdi.is_empty() && cdi::edits::resctrl_mounted(),
            intel_rdt_schemata: handler.features.intel_rdt_schemata,
            intel_rdt_monitoring: handler.features.intel_rdt_monitoring,
            user_namespace: userns.is_some(),
        };
        let spec = spec::build(&spec::SpecInput {
            id,
            config,
            sandbox,
            image: image.run_config(),
            image_name: &image_name,
            rootfs: &rootfs,
            user: &user,
            cgroups_path: &cgroup.spec_path,
            enforceable: self.cgroups.enforceable(),
            oom_score_adj_floor: self.oom_score_adj_floor,
            pid_namespace,
            volume_options: mounts::VolumeOptions {
                rro_supported: handler.features.recursive_read_only_mounts,
                image_volumes_noexec: self.image_volumes_noexec,
            },
            volume_sources: &volume_sources,
            cdi,
            cdi_support,
        })?;
        let spec = self.nri_adjust(id, config, sandbox, spec, cdi_support, adjusted)?;
        // A plugin may move the container's cgroup: its stats, OOM events
        // and updates follow it there.
        let cgroup = match spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
            Some(path) if path.as_os_str() != cgroup.spec_path.as_str() => self
                .cgroups
                .from_spec_path(&path.to_string_lossy())
                .unwrap_or(cgroup),
            _ => cgroup,
        };
        let spec_json = serde_json::to_vec_pretty(&spec).expect("spec encodes");
        std::fs::write(dir.join("config.json"), spec_json).map_err(|e| io("config.json", e))?;

        let log_path = log_path(sandbox, config);
        if let Some(parent) = log_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(parent).map_err(|e| io(&parent.display().to_string(), e))?;
        }
        std::fs::create_dir_all(&runtime.root).map_err(|e| io("runtime root", e))?;
        std::fs::create_dir_all(&self.socket_dir).map_err(|e| io("socket dir", e))?;
        let (control_socket, _) = shim::sockets(&self.socket_dir, id);
        if control_socket.as_os_str().len() > crius_shim::protocol::MAX_SOCKET_PATH {
            return Err(ContainerError::Precondition(format!(
                "state dir {} is too long for Unix socket paths under it",
                self.socket_dir.display()
            )));
        }
        let stop_signal = record::signal_from_cri(config.stop_signal)
            .or_else(|| record::parse_signal(&image.run_config().stop_signal))
            .unwrap_or(libc::SIGTERM);
        let record = ContainerRecord {
            id: id.to_string(),
            sandbox_id: sandbox.id.clone(),
            name: name.to_string(),
            config: config.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or(image.id.clone()),
            image_name,
            image_id: image.id.clone(),
            handler: handler.name.clone(),
            runtime: runtime.binary.clone(),
            runtime_root: runtime.root.clone(),
            runtime_args: runtime.args.clone(),
            state: ContainerState::Created,
            created_at: crate::time::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            init_pid: 0,
            shim_pid: 0,
            log_path,
            dir: dir.to_path_buf(),
            user,
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            stop_signal,
            shares_pid_namespace,
            cgroup,
            restore_from: checkpoint.map(|c| c.dir.clone()),
            restored: false,
        };
        // A restored container's shim starts at StartContainer, with the
        // runtime's restore.
        let mut record = record;
        if checkpoint.is_none() {
            let spawned = Instant::now();
            let started = shim::spawn(dir, &self.shim_config(&record, None)).map_err(|reason| {
                ContainerError::Runtime {
                    id: id.to_string(),
                    reason,
                }
            })?;
            metrics::pod_phase(Phase::RuncCreate, spawned.elapsed());
            record.init_pid = started.init_pid;
            record.shim_pid = started.shim_pid;
        }
        self.store.put(Table::Containers, id, &record)?;
        self.records
            .write()
            .expect("containers")
            .insert(id.to_string(), record.clone());
        self.watch_exit(id, &record.dir);
        self.events
            .send(Event::new(EventKind::Created, id, &record.sandbox_id));
        Ok(record)
    }

    /// The spec as NRI plugins adjust it: CDI devices they name are
    /// resolved like the CRI's, the rest is applied as JSON and read back.
    fn nri_adjust(
        &self,
        id: &str,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        mut spec: oci_spec::runtime::Spec,
        cdi_support: cdi::Support,
        adjusted: &mut Option<crate::nri::api::Container>,
    ) -> Result<oci_spec::runtime::Spec, ContainerError> {
        if !self.nri.active() {
            return Ok(spec);
        }
        let value = serde_json::to_value(&spec).expect("spec encodes");
        let container = crate::nri::convert::new_container(id, &sandbox.id, config, &value);
        // From here plugins have seen it: a failure, theirs included, is
        // reported to them as its stop and removal (as containerd does).
        *adjusted = Some(container.clone());
        let adjustment = self.nri.create_container(sandbox, container)?;
        let Some(adjustment) = adjustment else {
            return Ok(spec);
        };
        if !adjustment.CDI_devices.is_empty() {
            let wanted = cri::ContainerConfig {
                cdi_devices: adjustment
                    .CDI_devices
                    .iter()
                    .map(|d| cri::CdiDevice {
                        name: d.name.clone(),
                    })
                    .collect(),
                ..Default::default()
            };
            self.cdi.resolve(&wanted)?.apply(&mut spec, &cdi_support)?;
        }
        let mut value = serde_json::to_value(&spec).expect("spec encodes");
        crate::nri::apply::apply(&mut value, &adjustment)
            .and_then(|()| crate::nri::apply::check(&value))
            .map_err(|e| ContainerError::Invalid(format!("NRI adjustment: {e}")))
    }

    /// The shim's instructions for `record`'s container: create it, or
    /// restore it from a checkpoint.
    pub(super) fn shim_config(
        &self,
        record: &ContainerRecord,
        restore: Option<RestoreFrom>,
    ) -> ShimConfig {
        let (control_socket, console_socket) = shim::sockets(&self.socket_dir, &record.id);
        ShimConfig {
            id: record.id.clone(),
            bundle: record.dir.clone(),
            runtime: record.runtime.clone(),
            runtime_root: record.runtime_root.clone(),
            runtime_args: record.runtime_args.clone(),
            log_path: record.log_path.clone(),
            tty: record.config.tty,
            stdin: record.config.stdin,
            stdin_once: record.config.stdin_once,
            oom_file: Some(self.cgroups.oom_file(&record.cgroup)),
            control_socket,
            console_socket,
            restore,
        }
    }

    /// The checkpoint archive `archive`, unpacked into the new container's
    /// `dir` (removed again if it is not a checkpoint).
    fn unpack_checkpoint(
        &self,
        archive: &Path,
        dir: &Path,
        sandbox: &SandboxRecord,
    ) -> Result<restore::Checkpoint, ContainerError> {
        let source = archive.display().to_string();
        refuse_restore_in_userns(&source, sandbox)?;
        restore::unpack(archive, &dir.join(restore::UNPACKED)).map_err(|e| {
            let _ = std::fs::remove_dir_all(dir);
            checkpoint_error(e)
        })
    }

    /// The checkpoint image `image` (held), its layers unpacked into the
    /// new container's `dir` as an archive would be (removed again on
    /// failure).
    fn unpack_checkpoint_image(
        &self,
        image: &crate::image::HeldImage,
        name: &str,
        dir: &Path,
        sandbox: &SandboxRecord,
    ) -> Result<restore::Checkpoint, ContainerError> {
        refuse_restore_in_userns(name, sandbox)?;
        let unpacked = dir.join(restore::UNPACKED);
        self.images
            .unpack_layers(&image.record, &unpacked)
            .map_err(|e| restore::not_a_checkpoint(name, e))
            .and_then(|()| restore::read(&unpacked, name))
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(dir);
                checkpoint_error(e)
            })
    }

    /// The image a checkpoint was taken from, held: it must be present.
    fn checkpoint_image(
        &self,
        checkpoint: &restore::Checkpoint,
        archive: &str,
    ) -> Result<(crate::image::HeldImage, String), ContainerError> {
        for image in &checkpoint.images {
            if let Some(held) = self.images.hold_image(image)? {
                return Ok((held, image.clone()));
            }
        }
        Err(ContainerError::NotFound(format!(
            "image {:?}, which the checkpoint in config.image.image {archive} was taken from, is not present; pull it first",
            checkpoint.images[0]
        )))
    }

    /// Idmapped copies of the volumes that ask for the pod's id mappings,
    /// by mount index.
    fn idmapped_volumes(
        &self,
        id: &str,
        dir: &Path,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        userns: &Path,
    ) -> Result<BTreeMap<usize, VolumeSource>, ContainerError> {
        let mut sources = BTreeMap::new();
        let as_tuples = |m: &[cri::IdMapping]| {
            m.iter()
                .map(|m| (m.container_id, m.host_id, m.length))
                .collect::<Vec<_>>()
        };
        for (i, m) in config.mounts.iter().enumerate() {
            // An image volume's layers are idmapped when it is mounted.
            if (m.uid_mappings.is_empty() && m.gid_mappings.is_empty())
                || mounts::is_image_volume(m)
            {
                continue;
            }
            if as_tuples(&m.uid_mappings) != sandbox.namespaces.uid_map
                || as_tuples(&m.gid_mappings) != sandbox.namespaces.gid_map
            {
                return Err(ContainerError::Unsupported(format!(
                    "config.mounts[{i}]: idmapped mounts with mappings other than the pod's are not supported"
                )));
            }
            let host = Path::new(&m.host_path);
            let target = dir.join("volumes").join(i.to_string());
            let made = if host.is_dir() {
                std::fs::create_dir_all(&target)
            } else {
                std::fs::create_dir_all(dir.join("volumes"))
                    .and_then(|()| std::fs::File::create(&target).map(|_| ()))
            };
            made.and_then(|()| idmap::mount(host, &target, userns))
                .map_err(|e| {
                    ContainerError::Invalid(format!(
                        "config.mounts[{i}]: idmapped mount of {:?}: {e}",
                        m.host_path
                    ))
                })?;
            let _ = id;
            sources.insert(i, VolumeSource::Idmapped(target));
        }
        Ok(sources)
    }

    /// The pod's mounts of the images its image volumes name (made on first
    /// use, shared by the pod's containers, released with the pod), with
    /// each volume's sub path resolved inside its image.
    fn image_volumes(
        &self,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
    ) -> Result<BTreeMap<usize, VolumeSource>, ContainerError> {
        let mut sources = BTreeMap::new();
        let userns = sandbox
            .namespaces
            .user
            .as_deref()
            .map(|u| (u, sandbox.namespaces.root_ids()));
        for (i, m) in config.mounts.iter().enumerate() {
            if !mounts::is_image_volume(m) {
                if m.image_sub_path.is_empty() {
                    continue;
                }
                return Err(ContainerError::Invalid(format!(
                    "config.mounts[{i}].image_sub_path is set but image is not"
                )));
            }
            let image = m.image.as_ref().map(|s| s.image.as_str()).unwrap_or("");
            if !m.host_path.is_empty() {
                return Err(ContainerError::Invalid(format!(
                    "config.mounts[{i}]: host_path {:?} and image {image:?} are both set; an image volume has no host path",
                    m.host_path
                )));
            }
            let volume = self
                .images
                .mount_image_volume(&sandbox.id, image, userns)
                .map_err(|e| match e {
                    ImageError::NotFound(_) => ContainerError::NotFound(format!(
                        "config.mounts[{i}].image: image {image:?} is not present; pull it first"
                    )),
                    e => e.into(),
                })?;
            let source = volume.sub_path(&m.image_sub_path).map_err(|e| {
                ContainerError::Invalid(format!(
                    "config.mounts[{i}].image_sub_path {:?} of image {}: {e}",
                    m.image_sub_path, volume.image_id
                ))
            })?;
            sources.insert(i, VolumeSource::Image(source));
        }
        Ok(sources)
    }

    /// The container's PID namespace from its namespace options.
    fn pid_namespace(
        &self,
        sc: &cri::LinuxContainerSecurityContext,
        sandbox: &SandboxRecord,
    ) -> Result<(spec::PidNamespace, bool), ContainerError> {
        let ns = sc.namespace_options.clone().unwrap_or_default();
        let field = "config.linux.security_context.namespace_options";
        match cri::NamespaceMode::try_from(ns.pid).unwrap_or(cri::NamespaceMode::Container) {
            cri::NamespaceMode::Container => Ok((spec::PidNamespace::Own, false)),
            cri::NamespaceMode::Node => Ok((spec::PidNamespace::Host, true)),
            // POD (also the value of an unset field) in a pod without a
            // pod-wide PID namespace has nothing to share: the container
            // gets its own, as it would beside containerd's pause.
            cri::NamespaceMode::Pod => match &sandbox.namespaces.pid {
                Some(pin) => Ok((spec::PidNamespace::Join(pin.clone()), true)),
                None => Ok((spec::PidNamespace::Own, false)),
            },
            cri::NamespaceMode::Target => {
                let target = self.get(&ns.target_id).map_err(|_| {
                    ContainerError::Invalid(format!(
                        "{field}.target_id {:?} is not a container",
                        ns.target_id
                    ))
                })?;
                if target.state != ContainerState::Running {
                    return Err(ContainerError::Precondition(format!(
                        "{field}.target_id: container {} is not running",
                        target.id
                    )));
                }
                let path = PathBuf::from(format!("/proc/{}/ns/pid", target.init_pid));
                Ok((spec::PidNamespace::Join(path), true))
            }
        }
    }
}

/// A checkpoint's errors as CreateContainer's and StartContainer's.
/// criu restores into the pod's namespaces as they are; a user namespace
/// would need the checkpoint's ids mapped (not done).
fn refuse_restore_in_userns(source: &str, sandbox: &SandboxRecord) -> Result<(), ContainerError> {
    if sandbox.namespaces.user.is_some() {
        return Err(ContainerError::Unsupported(format!(
            "config.image.image {source}: restoring a checkpoint into a pod with a user namespace is not supported"
        )));
    }
    Ok(())
}

pub(super) fn checkpoint_error(e: CheckpointError) -> ContainerError {
    match e {
        CheckpointError::Invalid(m) => ContainerError::Invalid(m),
        CheckpointError::Precondition(m) => ContainerError::Precondition(m),
        CheckpointError::Timeout(m) => ContainerError::Timeout(m),
        CheckpointError::Failed(m) => ContainerError::Precondition(m),
    }
}
