//! A merged adjustment applied to a container's OCI spec before the bundle
//! is written. The spec is edited as JSON (the OCI field names), then read
//! back as `oci_spec::runtime::Spec`, so what plugins put in must still be
//! a valid spec.
//!
//! Applied: annotations, environment, args, OCI hooks, mounts, devices
//! (the node and its cgroup rule), rlimits, OOM score, cgroups path,
//! resources (CPU, memory, pids, hugepages, unified, device rules),
//! namespaces, sysctls, I/O priority, scheduler, seccomp policy, RDT,
//! memory policy and net devices. CDI devices are resolved by the
//! container module (`container::create`). Not applied, and refused by
//! name: block I/O and RDT classes (crius has no class config).

use super::api;
use super::result::removal;
use serde_json::{Map, Value, json};

/// What could not be applied, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

fn obj<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("an object")
}

fn arr<'a>(v: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    if !v[key].is_array() {
        v[key] = json!([]);
    }
    v[key].as_array_mut().expect("an array")
}

pub fn apply(spec: &mut Value, a: &api::ContainerAdjustment) -> Result<(), ApplyError> {
    // Annotations: removals, then values.
    let annotations = obj(spec, "annotations");
    for (k, _) in a.annotations.iter().filter(|(k, _)| removal(k).is_some()) {
        annotations.remove(removal(k).expect("marked"));
    }
    for (k, v) in a.annotations.iter().filter(|(k, _)| removal(k).is_none()) {
        annotations.insert(k.clone(), json!(v));
    }

    let process = &mut spec["process"];
    if !a.env.is_empty() {
        let env = arr(process, "env");
        for e in &a.env {
            let key = removal(&e.key).unwrap_or(&e.key);
            env.retain(|v| v.as_str().and_then(|s| s.split('=').next()) != Some(key));
            if removal(&e.key).is_none() {
                env.push(json!(format!("{}={}", e.key, e.value)));
            }
        }
    }
    if !a.args.is_empty() {
        process["args"] = json!(a.args);
    }
    for l in &a.rlimits {
        let rlimits = arr(process, "rlimits");
        rlimits.retain(|r| r["type"] != json!(l.type_));
        rlimits.push(json!({"type": l.type_, "hard": l.hard, "soft": l.soft}));
    }

    if let Some(h) = a.hooks.as_ref() {
        let hooks = &mut spec["hooks"];
        for (key, list) in [
            ("prestart", &h.prestart),
            ("createRuntime", &h.create_runtime),
            ("createContainer", &h.create_container),
            ("startContainer", &h.start_container),
            ("poststart", &h.poststart),
            ("poststop", &h.poststop),
        ] {
            if list.is_empty() {
                continue;
            }
            let out = arr(hooks, key);
            for hook in list {
                let mut v = json!({"path": hook.path});
                if !hook.args.is_empty() {
                    v["args"] = json!(hook.args);
                }
                if !hook.env.is_empty() {
                    v["env"] = json!(hook.env);
                }
                if let Some(t) = hook.timeout.as_ref() {
                    v["timeout"] = json!(t.value);
                }
                out.push(v);
            }
        }
    }

    if !a.mounts.is_empty() {
        let mounts = arr(spec, "mounts");
        for m in &a.mounts {
            let dest = removal(&m.destination).unwrap_or(&m.destination);
            mounts.retain(|v| v["destination"] != json!(dest));
            if removal(&m.destination).is_none() {
                let mut v = json!({"destination": m.destination, "source": m.source,
                                   "options": m.options});
                if !m.type_.is_empty() {
                    v["type"] = json!(m.type_);
                }
                mounts.push(v);
            }
        }
        // Parents before children, as runtimes mount in order.
        mounts.sort_by_key(|m| {
            m["destination"]
                .as_str()
                .map(|d| d.trim_end_matches('/').matches('/').count())
                .unwrap_or_default()
        });
    }

    if let Some(l) = a.linux.as_ref() {
        apply_linux(spec, l)?;
    }
    Ok(())
}

fn apply_linux(spec: &mut Value, l: &api::LinuxContainerAdjustment) -> Result<(), ApplyError> {
    for d in &l.devices {
        let path = removal(&d.path).unwrap_or(&d.path).to_string();
        let linux = &mut spec["linux"];
        arr(linux, "devices").retain(|v| v["path"] != json!(path));
        if removal(&d.path).is_some() {
            continue;
        }
        let mut dev = json!({"path": path, "type": d.type_, "major": d.major, "minor": d.minor});
        if let Some(m) = d.file_mode.as_ref() {
            dev["fileMode"] = json!(m.value);
        }
        if let Some(u) = d.uid.as_ref() {
            dev["uid"] = json!(u.value);
        }
        if let Some(g) = d.gid.as_ref() {
            dev["gid"] = json!(g.value);
        }
        arr(linux, "devices").push(dev);
        let resources = &mut linux["resources"];
        arr(resources, "devices").push(json!({"allow": true, "type": d.type_,
            "major": d.major, "minor": d.minor, "access": "rwm"}));
    }
    if !l.cgroups_path.is_empty() {
        spec["linux"]["cgroupsPath"] = json!(l.cgroups_path);
    }
    if let Some(adj) = l.oom_score_adj.as_ref() {
        spec["process"]["oomScoreAdj"] = json!(adj.value);
    }
    if let Some(r) = l.resources.as_ref() {
        apply_resources(&mut spec["linux"]["resources"], r)?;
    }
    for n in &l.namespaces {
        let kind = removal(&n.type_).unwrap_or(&n.type_);
        let namespaces = arr(&mut spec["linux"], "namespaces");
        namespaces.retain(|v| v["type"] != json!(kind));
        if removal(&n.type_).is_none() {
            let mut v = json!({"type": kind});
            if !n.path.is_empty() {
                v["path"] = json!(n.path);
            }
            namespaces.push(v);
        }
    }
    for (k, v) in &l.sysctl {
        let sysctl = obj(&mut spec["linux"], "sysctl");
        match removal(k) {
            Some(key) => {
                sysctl.remove(key);
            }
            None => {
                sysctl.insert(k.clone(), json!(v));
            }
        }
    }
    for (k, v) in &l.net_devices {
        let devices = obj(&mut spec["linux"], "netDevices");
        match removal(k) {
            Some(key) => {
                devices.remove(key);
            }
            None => {
                devices.insert(k.clone(), json!({"name": v.name}));
            }
        }
    }
    if let Some(p) = l.io_priority.as_ref() {
        let class = match p.class.enum_value_or_default() {
            api::IOPrioClass::IOPRIO_CLASS_RT => "IOPRIO_CLASS_RT",
            api::IOPrioClass::IOPRIO_CLASS_BE => "IOPRIO_CLASS_BE",
            api::IOPrioClass::IOPRIO_CLASS_IDLE => "IOPRIO_CLASS_IDLE",
            api::IOPrioClass::IOPRIO_CLASS_NONE => "",
        };
        if class.is_empty() {
            if let Some(process) = spec["process"].as_object_mut() {
                process.remove("ioPriority");
            }
        } else {
            spec["process"]["ioPriority"] = json!({"class": class, "priority": p.priority});
        }
    }
    if let Some(s) = l.scheduler.as_ref() {
        let policy = format!("{:?}", s.policy.enum_value_or_default());
        let flags: Vec<String> = s
            .flags
            .iter()
            .map(|f| format!("{:?}", f.enum_value_or_default()))
            .collect();
        spec["process"]["scheduler"] = json!({"policy": policy, "nice": s.nice,
            "priority": s.priority, "flags": flags, "runtime": s.runtime,
            "deadline": s.deadline, "period": s.period});
    }
    if let Some(p) = l.seccomp_policy.as_ref() {
        let syscalls: Vec<Value> = p
            .syscalls
            .iter()
            .map(|s| {
                let mut v = json!({"names": s.names, "action": s.action,
                    "args": s.args.iter().map(|a| json!({"index": a.index, "value": a.value,
                        "valueTwo": a.value_two, "op": a.op})).collect::<Vec<_>>()});
                if let Some(e) = s.errno_ret.as_ref() {
                    v["errnoRet"] = json!(e.value);
                }
                v
            })
            .collect();
        let mut v = json!({"defaultAction": p.default_action, "architectures": p.architectures,
            "flags": p.flags, "syscalls": syscalls});
        if let Some(e) = p.default_errno.as_ref() {
            v["defaultErrnoRet"] = json!(e.value);
        }
        if !p.listener_path.is_empty() {
            v["listenerPath"] = json!(p.listener_path);
            v["listenerMetadata"] = json!(p.listener_metadata);
        }
        spec["linux"]["seccomp"] = v;
    }
    if let Some(r) = l.rdt.as_ref() {
        if r.remove
            && let Some(linux) = spec["linux"].as_object_mut()
        {
            linux.remove("intelRdt");
        }
        if r.clos_id.is_some() || r.schemata.is_some() || r.enable_monitoring.is_some() {
            let rdt = obj(&mut spec["linux"], "intelRdt");
            if let Some(c) = r.clos_id.as_ref() {
                rdt.insert("closID".into(), json!(c.value));
            }
            if let Some(s) = r.schemata.as_ref() {
                rdt.insert("schemata".into(), json!(s.value));
            }
            if let Some(m) = r.enable_monitoring.as_ref() {
                rdt.insert("enableMonitoring".into(), json!(m.value));
            }
        }
    }
    if let Some(m) = l.memory_policy.as_ref() {
        let flags: Vec<String> = m
            .flags
            .iter()
            .map(|f| format!("{:?}", f.enum_value_or_default()))
            .collect();
        spec["linux"]["memoryPolicy"] = json!({"mode": format!("{:?}", m.mode.enum_value_or_default()),
            "nodes": m.nodes, "flags": flags});
    }
    Ok(())
}

fn apply_resources(target: &mut Value, r: &api::LinuxResources) -> Result<(), ApplyError> {
    if r.blockio_class.is_some() {
        return Err(ApplyError(
            "linux.resources.blockio_class: crius has no block I/O classes".into(),
        ));
    }
    if r.rdt_class.is_some() {
        return Err(ApplyError(
            "linux.resources.rdt_class: crius has no RDT classes; set linux.rdt instead".into(),
        ));
    }
    if let Some(m) = r.memory.as_ref() {
        let memory = obj(target, "memory");
        macro_rules! set {
            ($field:ident, $key:expr) => {
                if let Some(v) = m.$field.as_ref() {
                    memory.insert($key.into(), json!(v.value));
                }
            };
        }
        set!(limit, "limit");
        set!(reservation, "reservation");
        set!(swap, "swap");
        set!(kernel, "kernel");
        set!(kernel_tcp, "kernelTCP");
        set!(swappiness, "swappiness");
        set!(disable_oom_killer, "disableOOMKiller");
        set!(use_hierarchy, "useHierarchy");
        // A new limit with no swap of its own allows no swap, as
        // containerd's adjustment does, where the spec limits swap at all
        // (the node can enforce it).
        if let (Some(limit), None) = (m.limit.as_ref(), m.swap.as_ref())
            && memory.contains_key("swap")
        {
            memory.insert("swap".into(), json!(limit.value));
        }
    }
    if let Some(c) = r.cpu.as_ref() {
        let cpu = obj(target, "cpu");
        macro_rules! set {
            ($field:ident, $key:expr) => {
                if let Some(v) = c.$field.as_ref() {
                    cpu.insert($key.into(), json!(v.value));
                }
            };
        }
        set!(shares, "shares");
        set!(quota, "quota");
        set!(period, "period");
        set!(realtime_runtime, "realtimeRuntime");
        set!(realtime_period, "realtimePeriod");
        if !c.cpus.is_empty() {
            cpu.insert("cpus".into(), json!(c.cpus));
        }
        if !c.mems.is_empty() {
            cpu.insert("mems".into(), json!(c.mems));
        }
    }
    for h in &r.hugepage_limits {
        let limits = arr(target, "hugepageLimits");
        limits.retain(|l| l["pageSize"] != json!(h.page_size));
        limits.push(json!({"pageSize": h.page_size, "limit": h.limit}));
    }
    for (k, v) in &r.unified {
        obj(target, "unified").insert(k.clone(), json!(v));
    }
    if let Some(p) = r.pids.as_ref() {
        // NRI's -1 (and anything below 1) is "unlimited": no limit in OCI.
        if p.limit > 0 {
            target["pids"] = json!({"limit": p.limit});
        } else if let Some(t) = target.as_object_mut() {
            t.remove("pids");
        }
    }
    for d in &r.devices {
        let mut rule = json!({"allow": d.allow, "access": d.access});
        if !d.type_.is_empty() {
            rule["type"] = json!(d.type_);
        }
        if let Some(m) = d.major.as_ref() {
            rule["major"] = json!(m.value);
        }
        if let Some(m) = d.minor.as_ref() {
            rule["minor"] = json!(m.value);
        }
        arr(target, "devices").push(rule);
    }
    Ok(())
}

/// The spec after `apply`, checked to still be an OCI spec.
pub fn check(spec: &Value) -> Result<oci_spec::runtime::Spec, ApplyError> {
    serde_path_to_error::deserialize(spec).map_err(|e| {
        ApplyError(format!(
            "adjusted spec is not valid at {}: {}",
            e.path(),
            e.inner()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::MessageField;

    fn base() -> Value {
        json!({"ociVersion": "1.0.2", "root": {"path": "/r"},
               "process": {"args": ["sh"], "env": ["PATH=/bin", "GONE=1"], "cwd": "/",
                           "user": {"uid": 0, "gid": 0}},
               "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
               "linux": {"resources": {"memory": {"limit": 1}}}})
    }

    #[test]
    fn every_common_adjustment_reaches_the_spec() {
        let mut a = api::ContainerAdjustment::new();
        a.annotations.insert("nri/x".into(), "y".into());
        let mut e = api::KeyValue::new();
        e.key = "-GONE".into();
        a.env.push(e);
        let mut e = api::KeyValue::new();
        e.key = "NEW".into();
        e.value = "v".into();
        a.env.push(e);
        let mut m = api::Mount::new();
        m.destination = "/data/x".into();
        m.source = "/tmp".into();
        m.type_ = "bind".into();
        m.options = vec!["rbind".into(), "ro".into()];
        a.mounts.push(m);
        let mut h = api::Hook::new();
        h.path = "/bin/hook".into();
        a.hooks.mut_or_insert_default().prestart.push(h);
        let mut r = api::POSIXRlimit::new();
        r.type_ = "RLIMIT_NOFILE".into();
        r.hard = 10;
        r.soft = 5;
        a.rlimits.push(r);
        let l = a.linux.mut_or_insert_default();
        let mut d = api::LinuxDevice::new();
        d.path = "/dev/nri0".into();
        d.type_ = "c".into();
        d.major = 1;
        d.minor = 3;
        l.devices.push(d);
        l.oom_score_adj.mut_or_insert_default().value = 7;
        l.cgroups_path = "/nri/c".into();
        let res = l.resources.mut_or_insert_default();
        res.memory
            .mut_or_insert_default()
            .limit
            .mut_or_insert_default()
            .value = 1 << 20;
        res.cpu
            .mut_or_insert_default()
            .shares
            .mut_or_insert_default()
            .value = 3;
        res.pids = MessageField::some({
            let mut p = api::LinuxPids::new();
            p.limit = 9;
            p
        });

        let mut spec = base();
        apply(&mut spec, &a).unwrap();
        check(&spec).unwrap();
        assert_eq!(spec["annotations"]["nri/x"], "y");
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "NEW=v"]));
        assert_eq!(spec["mounts"][1]["destination"], "/data/x");
        assert_eq!(spec["hooks"]["prestart"][0]["path"], "/bin/hook");
        assert_eq!(spec["process"]["rlimits"][0]["soft"], 5);
        assert_eq!(spec["process"]["oomScoreAdj"], 7);
        assert_eq!(spec["linux"]["cgroupsPath"], "/nri/c");
        assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/nri0");
        assert_eq!(spec["linux"]["resources"]["devices"][0]["access"], "rwm");
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 3);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 9);
    }

    #[test]
    fn classes_are_refused_by_name_and_bad_specs_are_caught() {
        let mut a = api::ContainerAdjustment::new();
        a.linux
            .mut_or_insert_default()
            .resources
            .mut_or_insert_default()
            .blockio_class
            .mut_or_insert_default()
            .value = "gold".into();
        let err = apply(&mut base(), &a).unwrap_err();
        assert!(err.0.contains("blockio_class"), "{err}");

        let mut a = api::ContainerAdjustment::new();
        let mut r = api::POSIXRlimit::new();
        r.type_ = "RLIMIT_BOGUS".into();
        a.rlimits.push(r);
        let mut spec = base();
        apply(&mut spec, &a).unwrap();
        assert!(check(&spec).is_err());
    }
}
