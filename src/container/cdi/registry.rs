//! The CDI spec registry: every spec file in the configured directories,
//! loaded again whenever a directory's listing or a file's size or mtime
//! changed since the last look, so that a spec a DRA driver writes is seen
//! by the next CreateContainer without a restart.
//!
//! A device defined in several directories comes from the last directory
//! that defines it (the CDI rule: later directories override earlier ones).
//! Two files of that one directory defining it are a conflict, and the
//! device is refused rather than picked at random. A file that does not
//! parse is logged once per change and left out; its devices are unknown.

use super::names;
use super::schema::{self, SpecFile};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One spec file that loaded.
#[derive(Debug)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub spec: SpecFile,
}

/// What a fully qualified name stands for.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Device `index` of `spec`.
    Device { spec: Arc<LoadedSpec>, index: usize },
    /// Defined by both files, in the same directory.
    Conflict(PathBuf, PathBuf),
}

/// The registry's contents at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub devices: HashMap<String, Entry>,
    /// Files left out, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// What a directory looked like: the files' names, sizes, mtimes and
/// inodes. Equal fingerprints mean nothing needs reading again.
type Fingerprint = Vec<(PathBuf, Vec<(String, u64, i64, i64, u64)>)>;

pub struct Registry {
    dirs: Vec<PathBuf>,
    cache: Mutex<Option<(Fingerprint, Arc<Snapshot>)>>,
}

fn is_spec_file(name: &str) -> bool {
    name.ends_with(".json") || name.ends_with(".yaml")
}

/// The spec files of `dir` in name order; a missing dir has none.
fn spec_files(dir: &Path) -> Vec<(String, std::fs::Metadata)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Follows symlinks, as the reference loader reads them.
            let meta = std::fs::metadata(e.path()).ok()?;
            (is_spec_file(&name) && meta.is_file()).then_some((name, meta))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

impl Registry {
    pub fn new(dirs: Vec<PathBuf>) -> Registry {
        Registry {
            dirs,
            cache: Mutex::new(None),
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn fingerprint(&self) -> Fingerprint {
        self.dirs
            .iter()
            .map(|dir| {
                let files = spec_files(dir)
                    .into_iter()
                    .map(|(name, m)| (name, m.size(), m.mtime(), m.mtime_nsec(), m.ino()))
                    .collect();
                (dir.clone(), files)
            })
            .collect()
    }

    /// The current contents, re-read when the directories changed.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let fingerprint = self.fingerprint();
        let mut cache = self.cache.lock().expect("cdi registry");
        if let Some((seen, snapshot)) = cache.as_ref()
            && *seen == fingerprint
        {
            return snapshot.clone();
        }
        let snapshot = Arc::new(load(&self.dirs));
        *cache = Some((fingerprint, snapshot.clone()));
        snapshot
    }
}

/// Reads every spec file of `dirs` and resolves each device's name.
fn load(dirs: &[PathBuf]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    // name -> (priority, spec, index) for every definition.
    let mut defined: HashMap<String, Vec<(usize, Arc<LoadedSpec>, usize)>> = HashMap::new();
    for (priority, dir) in dirs.iter().enumerate() {
        for (name, _) in spec_files(dir) {
            let path = dir.join(name);
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| schema::parse(&path, &text));
            let spec = match parsed {
                Ok(spec) => spec,
                Err(reason) => {
                    tracing::warn!(file = %path.display(), %reason, "CDI spec file left out");
                    snapshot.failed.push((path, reason));
                    continue;
                }
            };
            let loaded = Arc::new(LoadedSpec { path, spec });
            for (index, device) in loaded.spec.devices.iter().enumerate() {
                let qualified = format!("{}={}", loaded.spec.kind, device.name);
                defined
                    .entry(qualified)
                    .or_default()
                    .push((priority, loaded.clone(), index));
            }
        }
    }
    for (name, mut definitions) in defined {
        // The highest priority wins; within it, files in name order.
        definitions.sort_by_key(|d| std::cmp::Reverse(d.0));
        let (priority, spec, index) = definitions[0].clone();
        let entry = match definitions.get(1) {
            Some((p, other, _)) if *p == priority => {
                Entry::Conflict(spec.path.clone(), other.path.clone())
            }
            _ => Entry::Device { spec, index },
        };
        snapshot.devices.insert(name, entry);
    }
    tracing::debug!(
        devices = snapshot.devices.len(),
        failed = snapshot.failed.len(),
        "CDI spec dirs loaded"
    );
    snapshot
}

impl Snapshot {
    /// The names of usable devices, sorted (for Status).
    pub fn device_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .devices
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Device { .. }))
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort();
        names
    }

    /// Files that failed to load whose kind matches `device`'s (when it
    /// could be read), for a clearer "unknown device" message.
    pub fn failed_for(&self, device: &str) -> Vec<&Path> {
        let kind = names::parse_qualified(device)
            .map(|q| format!("{}/{}", q.vendor, q.class))
            .unwrap_or_default();
        self.failed
            .iter()
            .filter(|(path, _)| {
                std::fs::read_to_string(path).is_ok_and(|t| t.contains(kind.as_str()))
            })
            .map(|(p, _)| p.as_path())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, device: &str, env: &str) -> String {
        format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "{kind}", "devices": [{{"name": "{device}", "containerEdits": {{"env": ["{env}"]}}}}]}}"#
        )
    }

    fn env_of(snapshot: &Snapshot, name: &str) -> String {
        match snapshot.devices.get(name) {
            Some(Entry::Device { spec, index }) => {
                spec.spec.devices[*index].container_edits.env[0].clone()
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn later_dirs_override_and_same_dir_conflicts() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("etc"), tmp.path().join("run"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("gpu.json"), spec("v.com/gpu", "0", "FROM=etc")).unwrap();
        std::fs::write(a.join("nic.yaml"), spec("v.com/nic", "0", "FROM=etc")).unwrap();
        std::fs::write(b.join("gpu.json"), spec("v.com/gpu", "0", "FROM=run")).unwrap();
        let registry = Registry::new(vec![a.clone(), b.clone(), tmp.path().join("absent")]);
        let s = registry.snapshot();
        assert_eq!(env_of(&s, "v.com/gpu=0"), "FROM=run");
        assert_eq!(env_of(&s, "v.com/nic=0"), "FROM=etc");
        assert_eq!(s.device_names(), ["v.com/gpu=0", "v.com/nic=0"]);

        // A second file in the winning dir: a conflict naming both.
        std::fs::write(b.join("gpu2.yaml"), spec("v.com/gpu", "0", "FROM=run2")).unwrap();
        let s = registry.snapshot();
        match s.devices.get("v.com/gpu=0") {
            Some(Entry::Conflict(x, y)) => {
                assert_eq!((x, y), (&b.join("gpu.json"), &b.join("gpu2.yaml")))
            }
            other => panic!("{other:?}"),
        }
        // Unchanged dirs give the same snapshot without reading again.
        assert!(Arc::ptr_eq(&s, &registry.snapshot()));
    }

    #[test]
    fn a_broken_file_is_left_out_and_a_rewrite_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("good.json"), spec("v.com/ok", "a", "A=1")).unwrap();
        std::fs::write(
            dir.join("bad.json"),
            "{\"cdiVersion\": \"0.6.0\", \"kind\": \"v.com/bad\",",
        )
        .unwrap();
        std::fs::write(dir.join("ignored.txt"), "not a spec").unwrap();
        let registry = Registry::new(vec![dir.clone()]);
        let s = registry.snapshot();
        assert_eq!(s.device_names(), ["v.com/ok=a"]);
        assert_eq!(s.failed.len(), 1);
        assert_eq!(
            s.failed_for("v.com/bad=x"),
            [dir.join("bad.json").as_path()]
        );
        assert!(s.failed_for("v.com/other=x").is_empty());

        std::fs::write(dir.join("bad.json"), spec("v.com/bad", "x", "B=1")).unwrap();
        let s = registry.snapshot();
        assert_eq!(s.device_names(), ["v.com/bad=x", "v.com/ok=a"]);
        assert!(s.failed.is_empty());
    }
}
