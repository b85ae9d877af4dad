//! The CDI spec file: its serde shape (every field of versions 0.3.0 to
//! 1.1.0, unknown fields refused as the reference loader does), the version
//! rules (a file must declare at least the version that introduced each
//! field it uses) and the checks a file must pass to be used at all.

use super::names;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Versions crius reads, oldest first. 0.1.0 and 0.2.0 predate the
/// released format; 0.8.0 and 1.0.0 changed no field, 1.1.0 added net
/// devices and RDT schemata/monitoring.
pub const VERSIONS: [Version; 8] = [
    Version(0, 3, 0),
    Version(0, 4, 0),
    Version(0, 5, 0),
    Version(0, 6, 0),
    Version(0, 7, 0),
    Version(0, 8, 0),
    Version(1, 0, 0),
    NEWEST,
];
/// The newest version crius reads.
pub const NEWEST: Version = Version(1, 1, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// "0.6.0" or "v0.6.0", if it is a version crius knows.
    fn parse(s: &str) -> Option<Version> {
        let mut parts = s.strip_prefix('v').unwrap_or(s).split('.');
        let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
        let v = Version(next()?, next()?, next()?);
        (parts.next().is_none() && VERSIONS.contains(&v)).then_some(v)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpecFile {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<DeviceDef>,
    #[serde(default)]
    pub container_edits: Edits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceDef {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub container_edits: Edits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Edits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub net_devices: Vec<NetDevice>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub mounts: Vec<MountEdit>,
    pub intel_rdt: Option<IntelRdt>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: String,
    /// "b", "c", "u", "p" or "" (from the host node).
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    pub file_mode: Option<u32>,
    /// Some of "rwm"; "" means "rwm", "none" no access.
    #[serde(default)]
    pub permissions: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountEdit {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntelRdt {
    #[serde(default, rename = "closID")]
    pub clos_id: String,
    #[serde(default)]
    pub l3_cache_schema: String,
    #[serde(default)]
    pub mem_bw_schema: String,
    /// Added in 1.1.0.
    pub schemata: Option<Vec<String>>,
    /// Added in 1.1.0.
    #[serde(default)]
    pub enable_monitoring: bool,
    /// 0.7.0 to 1.0.0; dropped in 1.1.0.
    #[serde(default, rename = "enableCMT")]
    pub enable_cmt: bool,
    /// 0.7.0 to 1.0.0; dropped in 1.1.0.
    #[serde(default, rename = "enableMBM")]
    pub enable_mbm: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetDevice {
    pub host_interface_name: String,
    pub name: String,
}

pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.net_devices.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.intel_rdt.is_none()
            && self.additional_gids.is_empty()
    }
}

/// Reads a spec file: JSON for `.json`, YAML for `.yaml`; then checks it.
pub fn parse(path: &Path, text: &[u8]) -> Result<SpecFile, String> {
    let spec: SpecFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml_ng::from_slice(text).map_err(|e| e.to_string())?
    };
    validate(&spec)?;
    Ok(spec)
}

/// The version rules and every field's constraints.
pub fn validate(spec: &SpecFile) -> Result<(), String> {
    let Some(declared) = Version::parse(&spec.cdi_version) else {
        return Err(format!(
            "cdiVersion {:?} is not one crius reads ({} to {NEWEST})",
            spec.cdi_version, VERSIONS[0]
        ));
    };
    let (needed, why) = required_version(spec);
    if declared < needed {
        return Err(format!(
            "cdiVersion {declared} is too old for what the spec uses: {why} needs {needed}"
        ));
    }
    if declared >= NEWEST {
        let dropped = std::iter::once(&spec.container_edits)
            .chain(spec.devices.iter().map(|d| &d.container_edits))
            .filter_map(|e| e.intel_rdt.as_ref())
            .any(|r| r.enable_cmt || r.enable_mbm);
        if dropped {
            return Err(format!(
                "intelRdt.enableCMT/enableMBM were dropped in {NEWEST}: use enableMonitoring"
            ));
        }
    }
    names::parse_kind(&spec.kind)?;
    check_annotations(&spec.annotations).map_err(|e| format!("annotations: {e}"))?;
    check_edits(&spec.container_edits).map_err(|e| format!("containerEdits: {e}"))?;
    if spec.devices.is_empty() {
        return Err("devices is empty: a spec declares at least one device".into());
    }
    let mut seen = HashSet::new();
    for d in &spec.devices {
        names::check_device_name(&d.name)?;
        if !seen.insert(d.name.as_str()) {
            return Err(format!("device {:?} is declared twice", d.name));
        }
        let at = |e: String| format!("device {:?}: {e}", d.name);
        check_annotations(&d.annotations).map_err(|e| at(format!("annotations: {e}")))?;
        if d.container_edits.is_empty() {
            return Err(at("containerEdits is empty".into()));
        }
        check_edits(&d.container_edits).map_err(|e| at(format!("containerEdits: {e}")))?;
    }
    Ok(())
}

/// The oldest version that has every field the spec uses, and the field.
fn required_version(spec: &SpecFile) -> (Version, &'static str) {
    let all_edits: Vec<&Edits> = std::iter::once(&spec.container_edits)
        .chain(spec.devices.iter().map(|d| &d.container_edits))
        .collect();
    let rdt = || all_edits.iter().filter_map(|e| e.intel_rdt.as_ref());
    if rdt().any(|r| r.schemata.is_some() || r.enable_monitoring) {
        return (NEWEST, "intelRdt.schemata or enableMonitoring");
    }
    if all_edits.iter().any(|e| !e.net_devices.is_empty()) {
        return (NEWEST, "netDevices");
    }
    if rdt().next().is_some() {
        return (Version(0, 7, 0), "intelRdt");
    }
    if all_edits.iter().any(|e| !e.additional_gids.is_empty()) {
        return (Version(0, 7, 0), "additionalGids");
    }
    let annotated =
        !spec.annotations.is_empty() || spec.devices.iter().any(|d| !d.annotations.is_empty());
    if annotated {
        return (Version(0, 6, 0), "annotations");
    }
    if spec
        .kind
        .split_once('/')
        .is_some_and(|(_, c)| c.contains('.'))
    {
        return (Version(0, 6, 0), "a '.' in the kind's class");
    }
    if spec
        .devices
        .iter()
        .any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()))
    {
        return (Version(0, 5, 0), "a device name starting with a digit");
    }
    let nodes = || all_edits.iter().flat_map(|e| &e.device_nodes);
    if nodes().any(|n| !n.host_path.is_empty()) {
        return (Version(0, 5, 0), "deviceNodes[].hostPath");
    }
    if all_edits
        .iter()
        .flat_map(|e| &e.mounts)
        .any(|m| !m.kind.is_empty())
    {
        return (Version(0, 4, 0), "mounts[].type");
    }
    (VERSIONS[0], "")
}

fn check_annotations(annotations: &BTreeMap<String, String>) -> Result<(), String> {
    match annotations.keys().find(|k| k.is_empty()) {
        Some(_) => Err("an annotation key is empty".into()),
        None => Ok(()),
    }
}

/// "NAME=value" with a non-empty name.
fn check_env(env: &[String]) -> Result<(), String> {
    match env.iter().find(|v| v.find('=').is_none_or(|i| i == 0)) {
        Some(v) => Err(format!("env {v:?} is not NAME=value")),
        None => Ok(()),
    }
}

fn check_edits(e: &Edits) -> Result<(), String> {
    check_env(&e.env)?;
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            return Err(format!("deviceNodes: path {:?} is not absolute", n.path));
        }
        if !matches!(n.kind.as_str(), "" | "b" | "c" | "u" | "p") {
            return Err(format!(
                "deviceNodes {:?}: type {:?} is not b, c, u or p",
                n.path, n.kind
            ));
        }
        let perms = n.permissions.as_str();
        if perms != "none" && !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!(
                "deviceNodes {:?}: permissions {perms:?} are not some of \"rwm\" or \"none\"",
                n.path
            ));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!(
                "hooks: hookName {:?} is not one of {HOOK_NAMES:?}",
                h.hook_name
            ));
        }
        if !h.path.starts_with('/') {
            return Err(format!(
                "hooks {:?}: path {:?} is not absolute",
                h.hook_name, h.path
            ));
        }
        check_env(&h.env).map_err(|err| format!("hooks {:?}: {err}", h.hook_name))?;
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!(
                "hooks {:?}: timeout must be greater than zero",
                h.hook_name
            ));
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() {
            return Err("mounts: hostPath is empty".into());
        }
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "mounts: containerPath {:?} is not absolute",
                m.container_path
            ));
        }
    }
    if let Some(rdt) = &e.intel_rdt {
        let c = rdt.clos_id.as_str();
        if c != "/" && (c.len() >= 4096 || c == "." || c == ".." || c.contains(['/', '\n'])) {
            return Err(format!(
                "intelRdt: closID {c:?} is not a resctrl group name"
            ));
        }
    }
    let (mut hosts, mut names) = (HashSet::new(), HashSet::new());
    for d in &e.net_devices {
        if d.host_interface_name.is_empty() || d.name.is_empty() {
            return Err("netDevices: hostInterfaceName and name must be set".into());
        }
        if !hosts.insert(&d.host_interface_name) || !names.insert(&d.name) {
            return Err(format!(
                "netDevices: {:?} -> {:?} repeats an interface",
                d.host_interface_name, d.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<SpecFile, String> {
        parse(Path::new("x.json"), text.as_bytes())
    }

    fn yaml(text: &str) -> Result<SpecFile, String> {
        parse(Path::new("x.yaml"), text.as_bytes())
    }

    /// A minimal spec of `version` with `edits` on device "d".
    fn with(version: &str, kind: &str, edits: &str) -> String {
        format!(
            r#"{{"cdiVersion": "{version}", "kind": "{kind}", "devices": [{{"name": "d", "containerEdits": {edits}}}]}}"#
        )
    }

    #[test]
    fn each_version_shape_parses_as_json() {
        let env = r#"{"env": ["A=1"]}"#;
        let shapes = [
            ("0.3.0", env.to_string()),
            (
                "0.4.0",
                r#"{"mounts": [{"hostPath": "/h", "containerPath": "/c", "type": "bind", "options": ["ro"]}]}"#.into(),
            ),
            (
                "0.5.0",
                r#"{"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "permissions": "rw", "uid": 1, "gid": 2}]}"#.into(),
            ),
            ("0.6.0", env.to_string()),
            (
                "0.7.0",
                r#"{"additionalGids": [5], "intelRdt": {"closID": "g", "l3CacheSchema": "L3:0=f", "enableCMT": true}}"#.into(),
            ),
            (
                "0.8.0",
                r#"{"hooks": [{"hookName": "createContainer", "path": "/bin/h", "args": ["h"], "env": ["X=1"], "timeout": 5}]}"#.into(),
            ),
            ("1.0.0", env.to_string()),
            (
                "v1.1.0",
                r#"{"netDevices": [{"hostInterfaceName": "eth1", "name": "net1"}], "intelRdt": {"schemata": ["L3:0=f"], "enableMonitoring": true}}"#.into(),
            ),
        ];
        for (version, edits) in shapes {
            let spec = json(&with(version, "vendor.com/class", &edits))
                .unwrap_or_else(|e| panic!("{version}: {e}"));
            assert!(!spec.devices[0].container_edits.is_empty(), "{version}");
        }
        let spec = json(&with(
            "0.5.0",
            "v.com/c",
            r#"{"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "fileMode": 438}]}"#,
        ))
        .unwrap();
        let node = &spec.devices[0].container_edits.device_nodes[0];
        assert_eq!(
            (node.host_path.as_str(), node.file_mode),
            ("/dev/null", Some(438))
        );
    }

    #[test]
    fn yaml_specs_parse() {
        let spec = yaml(
            "---\ncdiVersion: 0.6.0\nkind: vendor.com/gpu\nannotations:\n  a: b\ncontainerEdits:\n  env: [SHARED=1]\ndevices:\n  - name: gpu0\n    containerEdits:\n      deviceNodes:\n        - path: /dev/gpu0\n          type: c\n          major: 195\n      mounts:\n        - hostPath: /usr/lib/x\n          containerPath: /usr/lib/x\n          options: [ro, nosuid, bind]\n",
        )
        .unwrap();
        assert_eq!(spec.kind, "vendor.com/gpu");
        assert_eq!(spec.container_edits.env, ["SHARED=1"]);
        let edits = &spec.devices[0].container_edits;
        assert_eq!(edits.device_nodes[0].major, 195);
        assert_eq!(edits.mounts[0].options, ["ro", "nosuid", "bind"]);
    }

    #[test]
    fn fields_newer_than_the_declared_version_are_refused() {
        for (version, edits, needs) in [
            (
                "0.3.0",
                r#"{"mounts": [{"hostPath": "/h", "containerPath": "/c", "type": "bind"}]}"#,
                "0.4.0",
            ),
            (
                "0.4.0",
                r#"{"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null"}]}"#,
                "0.5.0",
            ),
            ("0.6.0", r#"{"additionalGids": [5]}"#, "0.7.0"),
            ("0.8.0", r#"{"intelRdt": {"closID": "g"}}"#, "0.7.0"),
            (
                "1.0.0",
                r#"{"netDevices": [{"hostInterfaceName": "a", "name": "b"}]}"#,
                "1.1.0",
            ),
        ] {
            let result = json(&with(version, "v.com/c", edits));
            if needs <= version {
                result.unwrap_or_else(|e| panic!("{version} {edits}: {e}"));
            } else {
                let err = result.unwrap_err();
                assert!(err.contains(&format!("needs {needs}")), "{version}: {err}");
            }
        }
        let dotted = json(&with("0.5.0", "v.com/c.x", r#"{"env": ["A=1"]}"#)).unwrap_err();
        assert!(dotted.contains("needs 0.6.0"), "{dotted}");
        let digit = r#"{"cdiVersion": "0.4.0", "kind": "v.com/c", "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]}"#;
        assert!(json(digit).unwrap_err().contains("needs 0.5.0"));
        let annotated = r#"{"cdiVersion": "0.5.0", "kind": "v.com/c", "annotations": {"a": "b"}, "devices": [{"name": "d", "containerEdits": {"env": ["A=1"]}}]}"#;
        assert!(json(annotated).unwrap_err().contains("needs 0.6.0"));
        let cmt = with("1.1.0", "v.com/c", r#"{"intelRdt": {"enableCMT": true}}"#);
        assert!(json(&cmt).unwrap_err().contains("enableMonitoring"));
    }

    #[test]
    fn malformed_specs_are_refused_with_the_reason() {
        let cases = [
            (with("0.2.0", "v.com/c", r#"{"env": ["A=1"]}"#), "cdiVersion"),
            (with("2.0.0", "v.com/c", r#"{"env": ["A=1"]}"#), "cdiVersion"),
            (with("0.6.0", "vendor", r#"{"env": ["A=1"]}"#), "kind"),
            (with("0.6.0", "v.com/c", r#"{}"#), "containerEdits is empty"),
            (with("0.6.0", "v.com/c", r#"{"env": ["=1"]}"#), "NAME=value"),
            (with("0.6.0", "v.com/c", r#"{"unknown": 1}"#), "unknown field"),
            (with("0.6.0", "v.com/c", r#"{"deviceNodes": [{"path": "/dev/x", "type": "z"}]}"#), "type"),
            (with("0.6.0", "v.com/c", r#"{"deviceNodes": [{"path": "/dev/x", "permissions": "rx"}]}"#), "permissions"),
            (with("0.6.0", "v.com/c", r#"{"deviceNodes": [{"path": "dev/x"}]}"#), "not absolute"),
            (with("0.6.0", "v.com/c", r#"{"hooks": [{"hookName": "later", "path": "/h"}]}"#), "hookName"),
            (with("0.6.0", "v.com/c", r#"{"hooks": [{"hookName": "poststop", "path": "/h", "timeout": 0}]}"#), "timeout"),
            (with("0.6.0", "v.com/c", r#"{"mounts": [{"hostPath": "", "containerPath": "/c"}]}"#), "hostPath"),
            (with("0.7.0", "v.com/c", r#"{"intelRdt": {"closID": "a/b"}}"#), "closID"),
            (with("1.1.0", "v.com/c", r#"{"netDevices": [{"hostInterfaceName": "a", "name": "x"}, {"hostInterfaceName": "b", "name": "x"}]}"#), "repeats"),
            (r#"{"cdiVersion": "0.6.0", "kind": "v.com/c", "devices": []}"#.into(), "devices is empty"),
            (r#"{"cdiVersion": "0.6.0", "kind": "v.com/c", "devices": [{"name": "a", "containerEdits": {"env": ["A=1"]}}, {"name": "a", "containerEdits": {"env": ["A=1"]}}]}"#.into(), "twice"),
            (r#"{"cdiVersion": "0.6.0", "kind": "v.com/c", "devices": [{"name": "-a", "containerEdits": {"env": ["A=1"]}}]}"#.into(), "device name"),
            ("not json".into(), "expected"),
        ];
        for (text, want) in cases {
            let err = json(&text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(yaml("cdiVersion: [").is_err());
    }
}
