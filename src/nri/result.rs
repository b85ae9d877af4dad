//! Merging plugins' answers, as NRI's adaptation does: plugins are asked in
//! index order, each sees the container as the plugins before it left it,
//! and each adjustable thing (an annotation, a mount's destination, an
//! environment variable, a device path, the memory limit, ...) has at most
//! one owner. A second plugin touching what another one set is a conflict
//! and fails the call, unless the first removed it again; a plugin may take
//! over what another set by removing it first ("-" before the key). OCI
//! hooks only accumulate.

use super::api;
use protobuf::MessageField;
use std::collections::{BTreeMap, HashMap};

/// Two plugins adjusted the same thing.
#[derive(Debug, thiserror::Error)]
#[error("plugins {plugin:?} and {other:?} both tried to set {what} of container {container}")]
pub struct Conflict {
    pub plugin: String,
    pub other: String,
    pub what: String,
    pub container: String,
}

/// A plugin asked to update the container it is adjusting.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error("plugin {plugin:?} asked to update container {container} while it is being created")]
    UpdateOfCreated { plugin: String, container: String },
}

/// What a plugin claims: one of NRI's fields and, for fields of many
/// entries (annotations, mounts, environment, ...), the entry's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    field: api::Field,
    key: Option<String>,
}

impl Claim {
    fn of(field: api::Field) -> Claim {
        Claim { field, key: None }
    }

    fn entry(field: api::Field, key: impl Into<String>) -> Claim {
        Claim {
            field,
            key: Some(key.into()),
        }
    }
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = field_label(self.field);
        match &self.key {
            Some(key) => write!(f, "{label} {key:?}"),
            None => f.write_str(label),
        }
    }
}

fn field_label(field: api::Field) -> &'static str {
    use api::Field as F;
    match field {
        F::None => "nothing",
        F::Annotations => "annotation",
        F::Mounts => "mount",
        F::OciHooks => "OCI hooks",
        F::Devices => "device",
        F::CdiDevices => "CDI device",
        F::Env => "environment variable",
        F::Args => "args",
        F::MemLimit => "memory limit",
        F::MemReservation => "memory reservation",
        F::MemSwapLimit => "memory swap limit",
        F::MemKernelLimit => "kernel memory limit",
        F::MemTCPLimit => "kernel TCP memory limit",
        F::MemSwappiness => "memory swappiness",
        F::MemDisableOomKiller => "OOM killer",
        F::MemUseHierarchy => "memory hierarchy",
        F::CPUShares => "CPU shares",
        F::CPUQuota => "CPU quota",
        F::CPUPeriod => "CPU period",
        F::CPURealtimeRuntime => "CPU realtime runtime",
        F::CPURealtimePeriod => "CPU realtime period",
        F::CPUSetCPUs => "cpuset CPUs",
        F::CPUSetMems => "cpuset memory nodes",
        F::PidsLimit => "pids limit",
        F::HugepageLimits => "hugepage limit",
        F::BlockioClass => "block I/O class",
        F::RdtClass => "RDT class",
        F::CgroupsUnified => "unified cgroup",
        F::CgroupsPath => "cgroups path",
        F::OomScoreAdj => "OOM score adjustment",
        F::Rlimits => "rlimit",
        F::IoPriority => "I/O priority",
        F::SeccompPolicy => "seccomp policy",
        F::Namespace => "namespace",
        F::Sysctl => "sysctl",
        F::LinuxNetDevices => "net device",
        F::LinuxSched => "scheduler",
        F::RdtClosID => "RDT",
        F::RdtSchemata => "RDT schemata",
        F::RdtEnableMonitoring => "RDT monitoring",
        F::MemoryPolicy => "memory policy",
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Owner {
    Set(String),
    /// Removed by this plugin: only it may set the thing again.
    Cleared(String),
}

/// Who set what, per container.
#[derive(Default)]
pub struct Owners(HashMap<(String, Claim), Owner>);

impl Owners {
    fn claim(&mut self, container: &str, what: Claim, plugin: &str) -> Result<(), Conflict> {
        let key = (container.to_string(), what);
        match self.0.get(&key) {
            Some(Owner::Cleared(p)) if p == plugin => {}
            Some(Owner::Set(other) | Owner::Cleared(other)) => {
                return Err(Conflict {
                    plugin: plugin.to_string(),
                    other: other.clone(),
                    what: key.1.to_string(),
                    container: key.0,
                });
            }
            None => {}
        }
        self.0.insert(key, Owner::Set(plugin.to_string()));
        Ok(())
    }

    fn clear(&mut self, container: &str, what: Claim, plugin: &str) {
        self.0.insert(
            (container.to_string(), what),
            Owner::Cleared(plugin.to_string()),
        );
    }

    /// Things that only accumulate (OCI hooks): every plugin that added
    /// to them, in order, never a conflict.
    fn accumulate(&mut self, container: &str, what: Claim, plugin: &str) {
        let owner = self
            .0
            .entry((container.to_string(), what))
            .or_insert_with(|| Owner::Set(String::new()));
        if let Owner::Set(plugins) = owner {
            if !plugins.is_empty() {
                plugins.push(',');
            }
            plugins.push_str(plugin);
        }
    }

    /// In NRI's form, for validators: a field's owner by container, an
    /// entry's by its key; "-plugin" where that plugin removed it.
    pub fn to_api(&self) -> api::OwningPlugins {
        let mut out = api::OwningPlugins::new();
        for ((container, claim), owner) in &self.0 {
            let name = match owner {
                Owner::Set(p) => p.clone(),
                Owner::Cleared(p) => format!("-{p}"),
            };
            let fields = out.owners.entry(container.clone()).or_default();
            let field = claim.field as i32;
            match &claim.key {
                None => {
                    fields.simple.insert(field, name);
                }
                Some(key) => {
                    let entries = fields.compound.entry(field).or_default();
                    entries.owners.insert(key.clone(), name);
                }
            }
        }
        out
    }
}

/// A key marked for removal: "-key" → "key".
pub fn removal(key: &str) -> Option<&str> {
    key.strip_prefix('-')
}

/// CreateContainer: the merged adjustment, and updates to other containers.
pub struct CreateMerge {
    /// The container as the next plugin sees it.
    pub container: api::Container,
    pub adjust: api::ContainerAdjustment,
    updates: Updates,
}

impl CreateMerge {
    pub fn new(container: api::Container) -> CreateMerge {
        CreateMerge {
            container,
            adjust: api::ContainerAdjustment::new(),
            updates: Updates::default(),
        }
    }

    pub fn apply(
        &mut self,
        response: api::CreateContainerResponse,
        plugin: &str,
    ) -> Result<(), MergeError> {
        if let Some(adjust) = response.adjust.into_option() {
            self.adjust_with(adjust, plugin)?;
        }
        for update in response.update {
            if update.container_id == self.container.id {
                return Err(MergeError::UpdateOfCreated {
                    plugin: plugin.to_string(),
                    container: update.container_id,
                });
            }
            self.updates.add(update, None, plugin)?;
        }
        Ok(())
    }

    /// Who set what so far, in NRI's form (for validators).
    pub fn owners(&self) -> api::OwningPlugins {
        self.updates.owners.to_api()
    }

    /// The adjustment and the updates of other containers.
    pub fn finish(self) -> (api::ContainerAdjustment, Vec<api::ContainerUpdate>) {
        (self.adjust, self.updates.finish())
    }

    fn adjust_with(&mut self, a: api::ContainerAdjustment, plugin: &str) -> Result<(), Conflict> {
        let id = self.container.id.clone();
        let owners = &mut self.updates.owners;
        let (ctr, out) = (&mut self.container, &mut self.adjust);

        // Annotations: removals first, then what is set.
        let mut annotations: Vec<_> = a.annotations.into_iter().collect();
        annotations.sort_by_key(|(k, _)| removal(k).is_none());
        for (k, v) in annotations {
            if let Some(key) = removal(&k) {
                owners.clear(&id, Claim::entry(api::Field::Annotations, key), plugin);
                ctr.annotations.remove(key);
                out.annotations.remove(key);
                out.annotations.insert(k.clone(), String::new());
            } else {
                owners.claim(
                    &id,
                    Claim::entry(api::Field::Annotations, k.as_str()),
                    plugin,
                )?;
                out.annotations.remove(&format!("-{k}"));
                ctr.annotations.insert(k.clone(), v.clone());
                out.annotations.insert(k, v);
            }
        }

        // Mounts by destination.
        keyed_list(
            a.mounts,
            |m| m.destination.clone(),
            api::Field::Mounts,
            &id,
            plugin,
            owners,
            &mut ctr.mounts,
            &mut out.mounts,
        )?;

        // Environment by name.
        let mut ctr_env: Vec<api::KeyValue> = ctr
            .env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                key_value(k, v)
            })
            .collect();
        keyed_list(
            a.env,
            |e| e.key.clone(),
            api::Field::Env,
            &id,
            plugin,
            owners,
            &mut ctr_env,
            &mut out.env,
        )?;
        ctr.env = ctr_env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect();

        // Args replace; a leading "" takes them over from another plugin.
        if !a.args.is_empty() {
            let mut args = a.args;
            if args[0].is_empty() {
                owners.clear(&id, Claim::of(api::Field::Args), plugin);
                args.remove(0);
            }
            owners.claim(&id, Claim::of(api::Field::Args), plugin)?;
            ctr.args = args.clone();
            out.args = args;
        }

        // Hooks accumulate.
        if let Some(h) = a.hooks.into_option() {
            owners.accumulate(&id, Claim::of(api::Field::OciHooks), plugin);
            let ch = ctr.hooks.mut_or_insert_default();
            let oh = out.hooks.mut_or_insert_default();
            for (c, o, add) in [
                (&mut ch.prestart, &mut oh.prestart, h.prestart),
                (
                    &mut ch.create_runtime,
                    &mut oh.create_runtime,
                    h.create_runtime,
                ),
                (
                    &mut ch.create_container,
                    &mut oh.create_container,
                    h.create_container,
                ),
                (
                    &mut ch.start_container,
                    &mut oh.start_container,
                    h.start_container,
                ),
                (&mut ch.poststart, &mut oh.poststart, h.poststart),
                (&mut ch.poststop, &mut oh.poststop, h.poststop),
            ] {
                c.extend(add.iter().cloned());
                o.extend(add);
            }
        }

        for l in a.rlimits {
            owners.claim(
                &id,
                Claim::entry(api::Field::Rlimits, l.type_.as_str()),
                plugin,
            )?;
            ctr.rlimits.push(l.clone());
            out.rlimits.push(l);
        }
        for d in a.CDI_devices {
            owners.claim(
                &id,
                Claim::entry(api::Field::CdiDevices, d.name.as_str()),
                plugin,
            )?;
            out.CDI_devices.push(d);
        }

        if let Some(linux) = a.linux.into_option() {
            self.adjust_linux(linux, plugin)?;
        }
        Ok(())
    }

    fn adjust_linux(
        &mut self,
        l: api::LinuxContainerAdjustment,
        plugin: &str,
    ) -> Result<(), Conflict> {
        let id = self.container.id.clone();
        let owners = &mut self.updates.owners;
        let ctr = self.container.linux.mut_or_insert_default();
        let out = self.adjust.linux.mut_or_insert_default();

        keyed_list(
            l.devices,
            |d| d.path.clone(),
            api::Field::Devices,
            &id,
            plugin,
            owners,
            &mut ctr.devices,
            &mut out.devices,
        )?;
        if let Some(r) = l.resources.into_option() {
            merge_resources(
                owners,
                &id,
                plugin,
                r,
                ctr.resources.mut_or_insert_default(),
                Some(out.resources.mut_or_insert_default()),
            )?;
        }
        if !l.cgroups_path.is_empty() {
            owners.claim(&id, Claim::of(api::Field::CgroupsPath), plugin)?;
            ctr.cgroups_path = l.cgroups_path.clone();
            out.cgroups_path = l.cgroups_path;
        }
        macro_rules! simple {
            ($field:ident, $what:expr) => {
                if l.$field.is_some() {
                    owners.claim(&id, Claim::of($what), plugin)?;
                    ctr.$field = l.$field.clone();
                    out.$field = l.$field;
                }
            };
        }
        simple!(oom_score_adj, api::Field::OomScoreAdj);
        simple!(io_priority, api::Field::IoPriority);
        simple!(seccomp_policy, api::Field::SeccompPolicy);
        simple!(scheduler, api::Field::LinuxSched);
        simple!(rdt, api::Field::RdtClosID);
        if l.memory_policy.is_some() {
            owners.claim(&id, Claim::of(api::Field::MemoryPolicy), plugin)?;
            out.memory_policy = l.memory_policy;
        }
        for n in l.namespaces {
            let key = removal(&n.type_).unwrap_or(&n.type_).to_string();
            owners.claim(
                &id,
                Claim::entry(api::Field::Namespace, key.as_str()),
                plugin,
            )?;
            ctr.namespaces.retain(|c| c.type_ != key);
            if removal(&n.type_).is_none() {
                ctr.namespaces.push(n.clone());
            }
            out.namespaces.push(n);
        }
        for (k, v) in l.sysctl {
            let key = removal(&k).unwrap_or(&k).to_string();
            if removal(&k).is_some() {
                owners.clear(&id, Claim::entry(api::Field::Sysctl, key.as_str()), plugin);
                ctr.sysctl.remove(&key);
            } else {
                owners.claim(&id, Claim::entry(api::Field::Sysctl, key.as_str()), plugin)?;
                ctr.sysctl.insert(key, v.clone());
            }
            out.sysctl.insert(k, v);
        }
        for (k, v) in l.net_devices {
            let key = removal(&k).unwrap_or(&k).to_string();
            owners.claim(&id, Claim::entry(api::Field::LinuxNetDevices, key), plugin)?;
            out.net_devices.insert(k, v);
        }
        Ok(())
    }
}

fn key_value(k: &str, v: &str) -> api::KeyValue {
    let mut kv = api::KeyValue::new();
    kv.key = k.to_string();
    kv.value = v.to_string();
    kv
}

/// Lists keyed by one field (mounts by destination, devices by path,
/// environment by name), where "-key" removes. What a plugin sets replaces
/// the container's entry of that key.
#[allow(clippy::too_many_arguments)]
fn keyed_list<T: Clone>(
    adds: Vec<T>,
    key_of: impl Fn(&T) -> String,
    field: api::Field,
    id: &str,
    plugin: &str,
    owners: &mut Owners,
    container: &mut Vec<T>,
    adjust: &mut Vec<T>,
) -> Result<(), Conflict> {
    for item in adds {
        let raw = key_of(&item);
        let (key, removing) = match removal(&raw) {
            Some(k) => (k.to_string(), true),
            None => (raw.clone(), false),
        };
        let claim = Claim::entry(field, key.as_str());
        if removing {
            owners.clear(id, claim, plugin);
        } else {
            owners.claim(id, claim, plugin)?;
        }
        container.retain(|c| key_of(c) != key);
        adjust.retain(|c| {
            let k = key_of(c);
            k != key && removal(&k) != Some(key.as_str())
        });
        if !removing {
            container.push(item.clone());
        }
        adjust.push(item);
    }
    Ok(())
}

/// Merges resources `r` from `plugin` into `target` (the container's) and
/// `reply` (the adjustment's), claiming each field set.
fn merge_resources(
    owners: &mut Owners,
    id: &str,
    plugin: &str,
    r: api::LinuxResources,
    target: &mut api::LinuxResources,
    mut reply: Option<&mut api::LinuxResources>,
) -> Result<(), Conflict> {
    macro_rules! field {
        ($part:ident, $field:ident, $what:expr) => {
            if let Some(src) = r.$part.as_ref()
                && src.$field.is_some()
            {
                owners.claim(id, Claim::of($what), plugin)?;
                target.$part.mut_or_insert_default().$field = src.$field.clone();
                if let Some(reply) = reply.as_deref_mut() {
                    reply.$part.mut_or_insert_default().$field = src.$field.clone();
                }
            }
        };
    }
    field!(memory, limit, api::Field::MemLimit);
    field!(memory, reservation, api::Field::MemReservation);
    field!(memory, swap, api::Field::MemSwapLimit);
    field!(memory, kernel, api::Field::MemKernelLimit);
    field!(memory, kernel_tcp, api::Field::MemTCPLimit);
    field!(memory, swappiness, api::Field::MemSwappiness);
    field!(memory, disable_oom_killer, api::Field::MemDisableOomKiller);
    field!(memory, use_hierarchy, api::Field::MemUseHierarchy);
    field!(cpu, shares, api::Field::CPUShares);
    field!(cpu, quota, api::Field::CPUQuota);
    field!(cpu, period, api::Field::CPUPeriod);
    field!(cpu, realtime_runtime, api::Field::CPURealtimeRuntime);
    field!(cpu, realtime_period, api::Field::CPURealtimePeriod);
    if let Some(cpu) = r.cpu.as_ref() {
        for (value, what) in [
            (&cpu.cpus, api::Field::CPUSetCPUs),
            (&cpu.mems, api::Field::CPUSetMems),
        ] {
            if value.is_empty() {
                continue;
            }
            owners.claim(id, Claim::of(what), plugin)?;
            for t in std::iter::once(&mut *target).chain(reply.as_deref_mut()) {
                let c = t.cpu.mut_or_insert_default();
                if what == api::Field::CPUSetCPUs {
                    c.cpus = value.clone();
                } else {
                    c.mems = value.clone();
                }
            }
        }
    }
    for h in r.hugepage_limits {
        owners.claim(
            id,
            Claim::entry(api::Field::HugepageLimits, h.page_size.as_str()),
            plugin,
        )?;
        for t in std::iter::once(&mut *target).chain(reply.as_deref_mut()) {
            t.hugepage_limits.retain(|o| o.page_size != h.page_size);
            t.hugepage_limits.push(h.clone());
        }
    }
    for (k, v) in r.unified {
        owners.claim(
            id,
            Claim::entry(api::Field::CgroupsUnified, k.as_str()),
            plugin,
        )?;
        for t in std::iter::once(&mut *target).chain(reply.as_deref_mut()) {
            t.unified.insert(k.clone(), v.clone());
        }
    }
    for d in r.devices {
        for t in std::iter::once(&mut *target).chain(reply.as_deref_mut()) {
            t.devices.push(d.clone());
        }
    }
    for (value, what) in [
        (r.blockio_class, api::Field::BlockioClass),
        (r.rdt_class, api::Field::RdtClass),
    ] {
        if value.is_some() {
            owners.claim(id, Claim::of(what), plugin)?;
            for t in std::iter::once(&mut *target).chain(reply.as_deref_mut()) {
                if what == api::Field::RdtClass {
                    t.rdt_class = value.clone();
                } else {
                    t.blockio_class = value.clone();
                }
            }
        }
    }
    if r.pids.is_some() {
        owners.claim(id, Claim::of(api::Field::PidsLimit), plugin)?;
        for t in std::iter::once(&mut *target).chain(reply) {
            t.pids = r.pids.clone();
        }
    }
    Ok(())
}

/// Updates requested of existing containers, merged per container.
#[derive(Default)]
pub struct Updates {
    owners: Owners,
    by_container: BTreeMap<String, api::ContainerUpdate>,
    order: Vec<String>,
}

impl Updates {
    /// Merges `update`; `base` is what the container's resources are before
    /// plugins touch them (for the container of an UpdateContainer call).
    fn add(
        &mut self,
        update: api::ContainerUpdate,
        base: Option<&api::LinuxResources>,
        plugin: &str,
    ) -> Result<(), Conflict> {
        let id = update.container_id.clone();
        let entry = self.by_container.entry(id.clone()).or_insert_with(|| {
            self.order.push(id.clone());
            let mut u = api::ContainerUpdate::new();
            u.container_id = id.clone();
            u.ignore_failure = true;
            if let Some(base) = base {
                u.linux.mut_or_insert_default().resources = MessageField::some(base.clone());
            }
            u
        });
        entry.ignore_failure &= update.ignore_failure;
        let Some(resources) = update
            .linux
            .into_option()
            .and_then(|l| l.resources.into_option())
        else {
            return Ok(());
        };
        // Work on a copy: a conflict in an update that may fail leaves
        // the merged one as it was.
        let mut merged = entry
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .cloned()
            .unwrap_or_default();
        match merge_resources(&mut self.owners, &id, plugin, resources, &mut merged, None) {
            Ok(()) => {
                entry.linux.mut_or_insert_default().resources = MessageField::some(merged);
                Ok(())
            }
            Err(_) if update.ignore_failure => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn finish(mut self) -> Vec<api::ContainerUpdate> {
        self.order
            .iter()
            .filter_map(|id| self.by_container.remove(id))
            .collect()
    }
}

/// UpdateContainer: the container's new resources as plugins left them,
/// and updates of other containers.
pub struct UpdateMerge {
    target: String,
    updates: Updates,
}

impl UpdateMerge {
    pub fn new(target: &str, requested: &api::LinuxResources) -> UpdateMerge {
        let mut updates = Updates::default();
        let mut own = api::ContainerUpdate::new();
        own.container_id = target.to_string();
        updates
            .add(own, Some(requested), "")
            .expect("an empty update conflicts with nothing");
        UpdateMerge {
            target: target.to_string(),
            updates,
        }
    }

    pub fn apply(
        &mut self,
        updates: Vec<api::ContainerUpdate>,
        plugin: &str,
    ) -> Result<(), MergeError> {
        for u in updates {
            self.updates.add(u, None, plugin)?;
        }
        Ok(())
    }

    /// (the target's resources, the other containers' updates)
    pub fn finish(self) -> (api::LinuxResources, Vec<api::ContainerUpdate>) {
        let target = self.target;
        let mut all = self.updates.finish();
        let position = all.iter().position(|u| u.container_id == target);
        let own = position
            .map(|i| all.remove(i))
            .and_then(|u| u.linux.into_option())
            .and_then(|l| l.resources.into_option())
            .unwrap_or_default();
        (own, all)
    }
}

/// StopContainer and Synchronize: updates only.
#[derive(Default)]
pub struct UpdatesOnly(Updates);

impl UpdatesOnly {
    pub fn apply(
        &mut self,
        updates: Vec<api::ContainerUpdate>,
        plugin: &str,
    ) -> Result<(), MergeError> {
        for u in updates {
            self.0.add(u, None, plugin)?;
        }
        Ok(())
    }

    pub fn finish(self) -> Vec<api::ContainerUpdate> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> api::Container {
        let mut c = api::Container::new();
        c.id = "c1".into();
        c.env = vec!["PATH=/bin".into(), "KEEP=1".into()];
        c
    }

    fn response(f: impl FnOnce(&mut api::ContainerAdjustment)) -> api::CreateContainerResponse {
        let mut r = api::CreateContainerResponse::new();
        f(r.adjust.mut_or_insert_default());
        r
    }

    #[test]
    fn two_plugins_setting_one_annotation_conflict() {
        let mut merge = CreateMerge::new(container());
        merge
            .apply(
                response(|a| {
                    a.annotations.insert("a".into(), "1".into());
                }),
                "10-one",
            )
            .unwrap();
        let err = merge
            .apply(
                response(|a| {
                    a.annotations.insert("a".into(), "2".into());
                }),
                "20-two",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugins \"20-two\" and \"10-one\" both tried to set annotation \"a\" of container c1"
        );
    }

    #[test]
    fn removing_first_takes_over_and_the_next_plugin_sees_the_change() {
        let mut merge = CreateMerge::new(container());
        merge
            .apply(response(|a| a.env.push(key_value("X", "1"))), "10-one")
            .unwrap();
        assert!(merge.container.env.contains(&"X=1".to_string()));
        // Removing then setting X in one answer is taking it over.
        merge
            .apply(
                response(|a| {
                    a.env.push(key_value("-X", ""));
                    a.env.push(key_value("X", "2"));
                }),
                "20-two",
            )
            .unwrap();
        let (adjust, updates) = merge.finish();
        assert!(updates.is_empty());
        let env: Vec<_> = adjust
            .env
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(env, [("X", "2")]);
    }

    #[test]
    fn resources_are_claimed_field_by_field_and_hooks_accumulate() {
        let mut merge = CreateMerge::new(container());
        let mem = |limit: i64| {
            response(move |a| {
                let r = a
                    .linux
                    .mut_or_insert_default()
                    .resources
                    .mut_or_insert_default();
                r.memory
                    .mut_or_insert_default()
                    .limit
                    .mut_or_insert_default()
                    .value = limit;
                let mut hook = api::Hook::new();
                hook.path = "/bin/true".into();
                a.hooks.mut_or_insert_default().prestart.push(hook);
            })
        };
        merge.apply(mem(100), "10-one").unwrap();
        let cpu = response(|a| {
            let r = a
                .linux
                .mut_or_insert_default()
                .resources
                .mut_or_insert_default();
            r.cpu
                .mut_or_insert_default()
                .shares
                .mut_or_insert_default()
                .value = 5;
            a.hooks
                .mut_or_insert_default()
                .prestart
                .push(api::Hook::new());
        });
        merge.apply(cpu, "20-two").unwrap();
        let (adjust, _) = merge.finish();
        assert_eq!(adjust.hooks.prestart.len(), 2);
        let r = &adjust.linux.resources;
        assert_eq!(r.memory.limit.value, 100);
        assert_eq!(r.cpu.shares.value, 5);

        let mut merge = CreateMerge::new(container());
        merge.apply(mem(100), "10-one").unwrap();
        assert!(merge.apply(mem(200), "30-three").is_err());
    }

    #[test]
    fn updating_the_container_being_created_is_refused() {
        let mut merge = CreateMerge::new(container());
        let mut r = api::CreateContainerResponse::new();
        let mut u = api::ContainerUpdate::new();
        u.container_id = "c1".into();
        r.update.push(u);
        assert!(matches!(
            merge.apply(r, "10-one"),
            Err(MergeError::UpdateOfCreated { .. })
        ));
    }

    #[test]
    fn update_merge_returns_the_target_and_the_others() {
        let mut requested = api::LinuxResources::new();
        requested
            .cpu
            .mut_or_insert_default()
            .shares
            .mut_or_insert_default()
            .value = 2;
        let mut merge = UpdateMerge::new("t", &requested);
        let update = |id: &str, quota: i64| {
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
            u
        };
        merge
            .apply(vec![update("t", 5000), update("o", 100)], "10-one")
            .unwrap();
        assert!(merge.apply(vec![update("o", 200)], "20-two").is_err());
        let (own, others) = merge.finish();
        assert_eq!(own.cpu.shares.value, 2);
        assert_eq!(own.cpu.quota.value, 5000);
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].container_id, "o");
    }
}
