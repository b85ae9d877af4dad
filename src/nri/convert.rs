//! crius's records as NRI sees them, and resources between the CRI and NRI.
//!
//! A container is described from its OCI spec (`config.json`), as the
//! runtime will run it: what plugins adjust is that spec.

use super::api;
use crate::container::{ContainerRecord, ContainerState};
use crate::cri;
use crate::sandbox::SandboxRecord;
use protobuf::{EnumOrUnknown, MessageField};
use serde_json::Value;

pub fn pod(record: &SandboxRecord) -> api::PodSandbox {
    let meta = record.metadata();
    let mut pod = api::PodSandbox::new();
    pod.id = record.id.clone();
    pod.name = meta.name;
    pod.uid = meta.uid;
    pod.namespace = meta.namespace;
    pod.labels = record.config.labels.clone().into_iter().collect();
    pod.annotations = record.config.annotations.clone().into_iter().collect();
    pod.runtime_handler = record.runtime_handler.clone();
    pod.ips = record
        .network
        .as_ref()
        .filter(|n| !n.detached)
        .map(|n| n.ips.clone())
        .unwrap_or_default();
    let linux = record.config.linux.clone().unwrap_or_default();
    let mut l = api::LinuxPodSandbox::new();
    l.cgroup_parent = linux.cgroup_parent.clone();
    if let Some(overhead) = linux.overhead.as_ref() {
        l.pod_overhead = MessageField::some(resources_from_cri(overhead));
    }
    if let Some(resources) = linux.resources.as_ref() {
        l.pod_resources = MessageField::some(resources_from_cri(resources));
    }
    pod.linux = MessageField::some(l);
    pod
}

/// A container being created: its spec (as JSON) and CRI config.
pub fn new_container(
    id: &str,
    sandbox_id: &str,
    config: &cri::ContainerConfig,
    spec: &Value,
) -> api::Container {
    let mut c = from_spec(spec);
    c.id = id.to_string();
    c.pod_sandbox_id = sandbox_id.to_string();
    c.name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    c.state = EnumOrUnknown::new(api::ContainerState::CONTAINER_UNKNOWN);
    c.labels = config.labels.clone().into_iter().collect();
    c.annotations = config.annotations.clone().into_iter().collect();
    if let Some(image) = config.image.as_ref() {
        c.image.mut_or_insert_default().name = image.image.clone();
    }
    c
}

/// An existing container, from its record and bundle.
pub fn container(record: &ContainerRecord) -> api::Container {
    let spec = std::fs::read(record.dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let mut c = from_spec(&spec);
    c.id = record.id.clone();
    c.pod_sandbox_id = record.sandbox_id.clone();
    c.name = record
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    c.state = EnumOrUnknown::new(match record.state {
        ContainerState::Created => api::ContainerState::CONTAINER_CREATED,
        ContainerState::Running => api::ContainerState::CONTAINER_RUNNING,
        ContainerState::Exited => api::ContainerState::CONTAINER_STOPPED,
    });
    c.labels = record.config.labels.clone().into_iter().collect();
    c.annotations = record.config.annotations.clone().into_iter().collect();
    c.pid = record.init_pid.max(0) as u32;
    c.created_at = record.created_at;
    c.started_at = record.started_at;
    c.finished_at = record.finished_at;
    c.exit_code = record.exit_code;
    c.status_reason = record.reason.clone();
    c.status_message = record.message.clone();
    let image = c.image.mut_or_insert_default();
    image.name = record.image_name.clone();
    image.config_digest = record.image_id.clone();
    if let Some(r) = record.resources.as_ref() {
        c.linux.mut_or_insert_default().resources = MessageField::some(resources_from_cri(r));
    }
    c
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn opt_i64(v: &Value) -> MessageField<api::OptionalInt64> {
    v.as_i64().map_or(MessageField::none(), |x| {
        let mut o = api::OptionalInt64::new();
        o.value = x;
        MessageField::some(o)
    })
}

fn opt_u64(v: &Value) -> MessageField<api::OptionalUInt64> {
    v.as_u64().map_or(MessageField::none(), |x| {
        let mut o = api::OptionalUInt64::new();
        o.value = x;
        MessageField::some(o)
    })
}

/// What NRI's Container carries of an OCI spec.
fn from_spec(spec: &Value) -> api::Container {
    let mut c = api::Container::new();
    let process = &spec["process"];
    c.args = strings(&process["args"]);
    c.env = strings(&process["env"]);
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let mut mount = api::Mount::new();
        mount.destination = m["destination"].as_str().unwrap_or_default().to_string();
        mount.type_ = m["type"].as_str().unwrap_or_default().to_string();
        mount.source = m["source"].as_str().unwrap_or_default().to_string();
        mount.options = strings(&m["options"]);
        c.mounts.push(mount);
    }
    let hooks = &spec["hooks"];
    if hooks.is_object() {
        let h = c.hooks.mut_or_insert_default();
        for (key, list) in [
            ("prestart", &mut h.prestart),
            ("createRuntime", &mut h.create_runtime),
            ("createContainer", &mut h.create_container),
            ("startContainer", &mut h.start_container),
            ("poststart", &mut h.poststart),
            ("poststop", &mut h.poststop),
        ] {
            for hook in hooks[key].as_array().into_iter().flatten() {
                let mut out = api::Hook::new();
                out.path = hook["path"].as_str().unwrap_or_default().to_string();
                out.args = strings(&hook["args"]);
                out.env = strings(&hook["env"]);
                if let Some(t) = hook["timeout"].as_i64() {
                    out.timeout.mut_or_insert_default().value = t;
                }
                list.push(out);
            }
        }
    }
    for r in process["rlimits"].as_array().into_iter().flatten() {
        let mut l = api::POSIXRlimit::new();
        l.type_ = r["type"].as_str().unwrap_or_default().to_string();
        l.hard = r["hard"].as_u64().unwrap_or_default();
        l.soft = r["soft"].as_u64().unwrap_or_default();
        c.rlimits.push(l);
    }
    let user = &process["user"];
    if user.is_object() {
        let u = c.user.mut_or_insert_default();
        u.uid = user["uid"].as_u64().unwrap_or_default() as u32;
        u.gid = user["gid"].as_u64().unwrap_or_default() as u32;
        u.additional_gids = user["additionalGids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_u64().map(|g| g as u32))
            .collect();
    }
    let linux = &spec["linux"];
    let l = c.linux.mut_or_insert_default();
    for n in linux["namespaces"].as_array().into_iter().flatten() {
        let mut ns = api::LinuxNamespace::new();
        ns.type_ = n["type"].as_str().unwrap_or_default().to_string();
        ns.path = n["path"].as_str().unwrap_or_default().to_string();
        l.namespaces.push(ns);
    }
    for d in linux["devices"].as_array().into_iter().flatten() {
        let mut dev = api::LinuxDevice::new();
        dev.path = d["path"].as_str().unwrap_or_default().to_string();
        dev.type_ = d["type"].as_str().unwrap_or_default().to_string();
        dev.major = d["major"].as_i64().unwrap_or_default();
        dev.minor = d["minor"].as_i64().unwrap_or_default();
        if let Some(mode) = d["fileMode"].as_u64() {
            dev.file_mode.mut_or_insert_default().value = mode as u32;
        }
        if let Some(uid) = d["uid"].as_u64() {
            dev.uid.mut_or_insert_default().value = uid as u32;
        }
        if let Some(gid) = d["gid"].as_u64() {
            dev.gid.mut_or_insert_default().value = gid as u32;
        }
        l.devices.push(dev);
    }
    if let Some(adj) = process["oomScoreAdj"].as_i64() {
        l.oom_score_adj.mut_or_insert_default().value = adj;
    }
    l.cgroups_path = linux["cgroupsPath"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(sysctl) = linux["sysctl"].as_object() {
        l.sysctl = sysctl
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
    }
    let res = &linux["resources"];
    if res.is_object() {
        let r = l.resources.mut_or_insert_default();
        let mem = &res["memory"];
        if mem.is_object() {
            let m = r.memory.mut_or_insert_default();
            m.limit = opt_i64(&mem["limit"]);
            m.reservation = opt_i64(&mem["reservation"]);
            m.swap = opt_i64(&mem["swap"]);
            m.swappiness = opt_u64(&mem["swappiness"]);
        }
        let cpu = &res["cpu"];
        if cpu.is_object() {
            let p = r.cpu.mut_or_insert_default();
            p.shares = opt_u64(&cpu["shares"]);
            p.quota = opt_i64(&cpu["quota"]);
            p.period = opt_u64(&cpu["period"]);
            p.cpus = cpu["cpus"].as_str().unwrap_or_default().to_string();
            p.mems = cpu["mems"].as_str().unwrap_or_default().to_string();
        }
        for h in res["hugepageLimits"].as_array().into_iter().flatten() {
            let mut limit = api::HugepageLimit::new();
            limit.page_size = h["pageSize"].as_str().unwrap_or_default().to_string();
            limit.limit = h["limit"].as_u64().unwrap_or_default();
            r.hugepage_limits.push(limit);
        }
        if let Some(u) = res["unified"].as_object() {
            r.unified = u
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect();
        }
        if let Some(limit) = res["pids"]["limit"].as_i64() {
            r.pids.mut_or_insert_default().limit = limit;
        }
    }
    c
}

/// CRI resources as NRI's.
pub fn resources_from_cri(r: &cri::LinuxContainerResources) -> api::LinuxResources {
    let mut out = api::LinuxResources::new();
    let cpu = out.cpu.mut_or_insert_default();
    let set_u64 = |v: i64| {
        let mut o = api::OptionalUInt64::new();
        o.value = v.max(0) as u64;
        MessageField::some(o)
    };
    let set_i64 = |v: i64| {
        let mut o = api::OptionalInt64::new();
        o.value = v;
        MessageField::some(o)
    };
    if r.cpu_shares != 0 {
        cpu.shares = set_u64(r.cpu_shares);
    }
    if r.cpu_quota != 0 {
        cpu.quota = set_i64(r.cpu_quota);
    }
    if r.cpu_period != 0 {
        cpu.period = set_u64(r.cpu_period);
    }
    cpu.cpus = r.cpuset_cpus.clone();
    cpu.mems = r.cpuset_mems.clone();
    let memory = out.memory.mut_or_insert_default();
    if r.memory_limit_in_bytes != 0 {
        memory.limit = set_i64(r.memory_limit_in_bytes);
    }
    if r.memory_swap_limit_in_bytes != 0 {
        memory.swap = set_i64(r.memory_swap_limit_in_bytes);
    }
    for h in &r.hugepage_limits {
        let mut l = api::HugepageLimit::new();
        l.page_size = h.page_size.clone();
        l.limit = h.limit;
        out.hugepage_limits.push(l);
    }
    out.unified = r.unified.clone().into_iter().collect();
    out
}

/// NRI resources applied over CRI ones: what NRI sets wins, what it leaves
/// unset stays.
pub fn resources_to_cri(
    r: &api::LinuxResources,
    base: &cri::LinuxContainerResources,
) -> cri::LinuxContainerResources {
    let mut out = base.clone();
    if let Some(cpu) = r.cpu.as_ref() {
        if let Some(v) = cpu.shares.as_ref() {
            out.cpu_shares = v.value as i64;
        }
        if let Some(v) = cpu.quota.as_ref() {
            out.cpu_quota = v.value;
        }
        if let Some(v) = cpu.period.as_ref() {
            out.cpu_period = v.value as i64;
        }
        if !cpu.cpus.is_empty() {
            out.cpuset_cpus = cpu.cpus.clone();
        }
        if !cpu.mems.is_empty() {
            out.cpuset_mems = cpu.mems.clone();
        }
    }
    if let Some(memory) = r.memory.as_ref() {
        if let Some(v) = memory.limit.as_ref() {
            out.memory_limit_in_bytes = v.value;
        }
        if let Some(v) = memory.swap.as_ref() {
            out.memory_swap_limit_in_bytes = v.value;
        }
    }
    for h in &r.hugepage_limits {
        out.hugepage_limits.retain(|o| o.page_size != h.page_size);
        out.hugepage_limits.push(cri::HugepageLimit {
            page_size: h.page_size.clone(),
            limit: h.limit,
        });
    }
    for (k, v) in &r.unified {
        out.unified.insert(k.clone(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_as_an_nri_container() {
        let spec = serde_json::json!({
            "process": {"args": ["sh"], "env": ["A=1"], "oomScoreAdj": 5,
                        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 5}],
                        "user": {"uid": 1, "gid": 2}},
            "mounts": [{"destination": "/d", "type": "bind", "source": "/s", "options": ["ro"]}],
            "linux": {"cgroupsPath": "/x", "resources": {"memory": {"limit": 100}, "cpu": {"shares": 2}},
                      "devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]}
        });
        let c = from_spec(&spec);
        assert_eq!(c.args, ["sh"]);
        assert_eq!(c.mounts[0].destination, "/d");
        assert_eq!(c.rlimits[0].soft, 5);
        assert_eq!(c.linux.oom_score_adj.value, 5);
        assert_eq!(c.linux.cgroups_path, "/x");
        assert_eq!(c.linux.resources.memory.limit.value, 100);
        assert_eq!(c.linux.devices[0].path, "/dev/x");
        assert_eq!(c.user.gid, 2);
    }

    #[test]
    fn nri_resources_override_only_what_they_set() {
        let base = cri::LinuxContainerResources {
            cpu_shares: 2,
            memory_limit_in_bytes: 100,
            ..Default::default()
        };
        let mut r = api::LinuxResources::new();
        r.memory
            .mut_or_insert_default()
            .limit
            .mut_or_insert_default()
            .value = 200;
        let out = resources_to_cri(&r, &base);
        assert_eq!(out.cpu_shares, 2);
        assert_eq!(out.memory_limit_in_bytes, 200);
    }
}
