//! CDI (Container Device Interface) devices: the path DRA drivers and
//! CDI-mode device plugins use to give a container a device. A container
//! asks for fully qualified names (`vendor.com/class=name`) in
//! `CDI_devices`, or in the older `cdi.k8s.io/<key>` annotations
//! (comma-separated names) that device plugins set; each name is looked up
//! in the spec files of `runtime.cdi_spec_dirs`, and the spec's edits, then
//! the device's, are applied to the OCI spec after crius's own devices and
//! mounts (as containerd does).
//!
//! - `names`: the kind and device name rules.
//! - `schema`: the spec file format and its version rules.
//! - `registry`: the directories, re-read when they change.
//! - `edits`: applying edits to an OCI spec; `nodes`: device nodes.

pub mod edits;
pub mod names;
mod nodes;
pub mod registry;
pub mod schema;

use super::ContainerError;
use crate::cri;
pub use edits::Support;
use oci_spec::runtime::Spec;
pub use registry::Registry;
use registry::{Entry, LoadedSpec};
use std::collections::HashSet;
use std::sync::Arc;

/// The annotation prefix of device plugins' CDI requests.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// One requested device and the field that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub field: String,
    pub name: String,
}

/// The devices a container asks for: `CDI_devices` first, then the
/// annotations (by key), each name once. Malformed names are refused.
pub fn requests(config: &cri::ContainerConfig) -> Result<Vec<Request>, ContainerError> {
    let mut out: Vec<Request> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |field: String, name: &str| -> Result<(), ContainerError> {
        names::parse_qualified(name)
            .map_err(|e| ContainerError::Invalid(format!("{field}: CDI device {name:?} {e}")))?;
        if seen.insert(name.to_string()) {
            out.push(Request {
                field,
                name: name.to_string(),
            });
        }
        Ok(())
    };
    for (i, d) in config.cdi_devices.iter().enumerate() {
        add(format!("config.CDI_devices[{i}]"), &d.name)?;
    }
    let mut keys: Vec<&String> = config
        .annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for key in keys {
        for name in config.annotations[key].split(',') {
            add(format!("config.annotations[{key:?}]"), name)?;
        }
    }
    Ok(out)
}

/// Requested devices, found in the registry.
#[derive(Debug, Default)]
pub struct Injection {
    devices: Vec<(Request, Arc<LoadedSpec>, usize)>,
}

impl Injection {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Applies each spec's edits (once, before its first device) and each
    /// device's edits, in request order.
    pub fn apply(&self, spec: &mut Spec, support: &Support) -> Result<(), ContainerError> {
        let mut specs_done = HashSet::new();
        let mut all = Vec::new();
        for (request, loaded, index) in &self.devices {
            let source = || edits::Source {
                field: &request.field,
                device: &request.name,
                file: &loaded.path,
            };
            if specs_done.insert(Arc::as_ptr(loaded)) && !loaded.spec.container_edits.is_empty() {
                all.push((source(), &loaded.spec.container_edits));
            }
            all.push((source(), &loaded.spec.devices[*index].container_edits));
        }
        edits::apply(spec, &all, support)
    }
}

impl Registry {
    /// Finds every device `config` asks for. An unknown device (also one
    /// whose spec file failed to load) is InvalidArgument, as is a device
    /// two files of one directory define.
    pub fn resolve(&self, config: &cri::ContainerConfig) -> Result<Injection, ContainerError> {
        let requests = requests(config)?;
        if requests.is_empty() {
            return Ok(Injection::default());
        }
        let snapshot = self.snapshot();
        let mut devices = Vec::new();
        for request in requests {
            match snapshot.devices.get(&request.name) {
                Some(Entry::Device { spec, index }) => {
                    devices.push((request, spec.clone(), *index));
                }
                Some(Entry::Conflict(a, b)) => {
                    return Err(ContainerError::Invalid(format!(
                        "{}: CDI device {:?} is defined by both {} and {} in the same directory; remove one",
                        request.field,
                        request.name,
                        a.display(),
                        b.display()
                    )));
                }
                None => {
                    let failed = snapshot.failed_for(&request.name);
                    let hint = if failed.is_empty() {
                        String::new()
                    } else {
                        let files: Vec<String> =
                            failed.iter().map(|p| p.display().to_string()).collect();
                        format!(
                            "; spec files of its kind failed to load (see criusd's log): {}",
                            files.join(", ")
                        )
                    };
                    return Err(ContainerError::Invalid(format!(
                        "{}: unknown CDI device {:?}: no spec in {:?} defines it{hint}",
                        request.field,
                        request.name,
                        self.dirs()
                    )));
                }
            }
        }
        Ok(Injection { devices })
    }

    /// For verbose Status: the dirs, the devices found and the files left
    /// out.
    pub fn describe(&self) -> serde_json::Value {
        let snapshot = self.snapshot();
        let failed: serde_json::Map<String, serde_json::Value> = snapshot
            .failed
            .iter()
            .map(|(p, reason)| (p.display().to_string(), reason.clone().into()))
            .collect();
        serde_json::json!({
            "specDirs": self.dirs(),
            "devices": snapshot.device_names(),
            "failedSpecFiles": failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> cri::ContainerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn requests_take_the_field_then_annotations_once_each() {
        let c = config(
            r#"{"CDI_devices": [{"name": "v.com/gpu=0"}, {"name": "v.com/gpu=0"}],
                "annotations": {"cdi.k8s.io/b": "v.com/gpu=0,v.com/gpu=2", "cdi.k8s.io/a": "v.com/gpu=1", "other": "x"}}"#,
        );
        let got: Vec<(String, String)> = requests(&c)
            .unwrap()
            .into_iter()
            .map(|r| (r.field, r.name))
            .collect();
        assert_eq!(
            got,
            [
                ("config.CDI_devices[0]".into(), "v.com/gpu=0".into()),
                (
                    "config.annotations[\"cdi.k8s.io/a\"]".into(),
                    "v.com/gpu=1".into()
                ),
                (
                    "config.annotations[\"cdi.k8s.io/b\"]".into(),
                    "v.com/gpu=2".into()
                ),
            ]
        );
        let bad = requests(&config(
            r#"{"CDI_devices": [{"name": "v.com/gpu=0"}, {"name": "gpu1"}]}"#,
        ))
        .unwrap_err();
        assert!(matches!(bad, ContainerError::Invalid(_)));
        assert!(
            bad.to_string()
                .starts_with("config.CDI_devices[1]: CDI device \"gpu1\""),
            "{bad}"
        );
        let bad = requests(&config(
            r#"{"annotations": {"cdi.k8s.io/x": "v.com/gpu=0,"}}"#,
        ))
        .unwrap_err();
        assert!(bad.to_string().contains("cdi.k8s.io/x"), "{bad}");
    }

    #[test]
    fn resolve_finds_devices_and_applies_spec_edits_once_first() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("v.yaml"),
            "cdiVersion: 0.6.0\nkind: v.com/gpu\ncontainerEdits:\n  env: [ORDER=spec, SHARED=1]\ndevices:\n- name: '0'\n  containerEdits:\n    env: [ORDER=dev0]\n- name: '1'\n  containerEdits:\n    env: [DEV1=1]\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("broken.json"),
            r#"{"cdiVersion": "0.6.0", "kind": "v.com/broken", "devices": []}"#,
        )
        .unwrap();
        let registry = Registry::new(vec![tmp.path().to_path_buf()]);
        let injection = registry
            .resolve(&config(
                r#"{"CDI_devices": [{"name": "v.com/gpu=0"}, {"name": "v.com/gpu=1"}]}"#,
            ))
            .unwrap();
        let mut spec = Spec::default();
        injection.apply(&mut spec, &Support::default()).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        // After oci-spec's defaults (PATH, TERM): the spec's edits once,
        // then each device's, which win by name.
        assert_eq!(env[2..], ["ORDER=dev0", "SHARED=1", "DEV1=1"]);

        let unknown = registry
            .resolve(&config(
                r#"{"CDI_devices": [{"name": "v.com/gpu=0"}, {"name": "v.com/gpu=9"}]}"#,
            ))
            .unwrap_err();
        assert!(matches!(unknown, ContainerError::Invalid(_)));
        let msg = unknown.to_string();
        assert!(
            msg.starts_with("config.CDI_devices[1]: unknown CDI device \"v.com/gpu=9\""),
            "{msg}"
        );
        let broken = registry
            .resolve(&config(r#"{"CDI_devices": [{"name": "v.com/broken=x"}]}"#))
            .unwrap_err()
            .to_string();
        assert!(broken.contains("broken.json"), "{broken}");
        // Nothing asked: the registry is not even read.
        assert!(registry.resolve(&config("{}")).unwrap().is_empty());
        let described = registry.describe();
        assert_eq!(
            described["devices"],
            serde_json::json!(["v.com/gpu=0", "v.com/gpu=1"])
        );
        assert!(described["failedSpecFiles"].as_object().unwrap().len() == 1);
    }

    #[test]
    fn a_conflict_names_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["a.json", "b.json"] {
            std::fs::write(
                tmp.path().join(name),
                r#"{"cdiVersion": "0.3.0", "kind": "v.com/gpu", "devices": [{"name": "x", "containerEdits": {"env": ["A=1"]}}]}"#,
            )
            .unwrap();
        }
        let registry = Registry::new(vec![tmp.path().to_path_buf()]);
        let err = registry
            .resolve(&config(r#"{"CDI_devices": [{"name": "v.com/gpu=x"}]}"#))
            .unwrap_err();
        assert!(matches!(err, ContainerError::Invalid(_)));
        let msg = err.to_string();
        assert!(msg.contains("a.json") && msg.contains("b.json"), "{msg}");
    }
}
