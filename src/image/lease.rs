//! Leases: what keeps blobs and snapshots from garbage collection while no
//! image record holds them.
//!
//! Two kinds, one rule: GC deletes only what no record and no lease names.
//! - Durable leases (`lease.json`, a [`Lease`]) of containers' root
//!   filesystems and of image volumes: written before their mount, deleted
//!   with it. They outlive criusd, as the mounts do.
//! - In-flight leases ([`InFlight`]), in memory, held by work that has not
//!   yet written what will hold its objects: a pull, from before its first
//!   byte until its image record is saved; a CreateContainer or an image
//!   volume, from the image lookup until its durable lease is written. They
//!   end with the work, or with the process; the start-up GC then removes
//!   whatever the interrupted work left.
//!
//! GC decides, and moves what it deletes out of sight, under the lock of the
//! in-flight table; taking a hold takes the same lock. So a hold either
//! comes first, and GC keeps what it names, or comes after, and the holder
//! finds the object gone and makes it again: holders check that an object
//! exists only once they hold it.

use super::record::ImageRecord;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A durable lease: what a rootfs or an image volume holds on to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub image_id: String,
    /// Bottom layer first.
    pub chain_ids: Vec<String>,
}

const LEASE_FILE: &str = "lease.json";

impl Lease {
    pub fn of(record: &ImageRecord) -> Lease {
        Lease {
            image_id: record.id.clone(),
            chain_ids: record.chain_ids().map(str::to_string).collect(),
        }
    }

    /// Writes `dir/lease.json` whole or not at all (a crash leaves no torn
    /// lease that GC would not read).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let temp = dir.join(".lease.json.tmp");
        std::fs::write(&temp, serde_json::to_vec(self).expect("lease encodes"))?;
        std::fs::rename(temp, dir.join(LEASE_FILE))
    }

    pub fn read(dir: &Path) -> Option<Lease> {
        serde_json::from_slice(&std::fs::read(dir.join(LEASE_FILE)).ok()?).ok()
    }
}

/// What one in-flight lease holds.
#[derive(Debug, Default)]
struct Held {
    blobs: HashSet<String>,
    chains: HashSet<String>,
}

/// The in-flight leases. Its lock is the GC lock (see the module doc).
#[derive(Debug, Default)]
pub struct LeaseTable {
    next: u64,
    leases: HashMap<u64, Held>,
}

impl LeaseTable {
    /// Blobs and chain IDs held by in-flight work.
    pub fn held(&self) -> (HashSet<String>, HashSet<String>) {
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for held in self.leases.values() {
            blobs.extend(held.blobs.iter().cloned());
            chains.extend(held.chains.iter().cloned());
        }
        (blobs, chains)
    }
}

/// The shared table.
#[derive(Debug, Clone, Default)]
pub struct Leases(Arc<Mutex<LeaseTable>>);

impl Leases {
    /// Locks the table: no hold is taken or released until the guard goes.
    pub fn lock(&self) -> MutexGuard<'_, LeaseTable> {
        self.0.lock().expect("image leases")
    }

    /// A new, empty in-flight lease.
    pub fn begin(&self) -> InFlight {
        let mut table = self.lock();
        table.next += 1;
        let id = table.next;
        table.leases.insert(id, Held::default());
        InFlight {
            leases: self.clone(),
            id,
        }
    }
}

/// An in-flight lease; dropping it releases everything it holds.
#[derive(Debug)]
pub struct InFlight {
    leases: Leases,
    id: u64,
}

impl InFlight {
    /// Adds blobs and snapshots (by chain ID) to the lease.
    pub fn hold<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a str>,
        chains: impl IntoIterator<Item = &'a str>,
    ) {
        let mut table = self.leases.lock();
        let held = table.leases.get_mut(&self.id).expect("live lease");
        held.blobs.extend(blobs.into_iter().map(str::to_string));
        held.chains.extend(chains.into_iter().map(str::to_string));
    }

    /// Looks `find` up and holds the image it returns, with no GC in
    /// between (`find` runs under the table's lock, so it must not take it).
    pub fn hold_image<E>(
        &self,
        find: impl FnOnce() -> Result<Option<ImageRecord>, E>,
    ) -> Result<Option<ImageRecord>, E> {
        let mut table = self.leases.lock();
        let record = find()?;
        if let Some(record) = &record {
            let held = table.leases.get_mut(&self.id).expect("live lease");
            held.blobs.extend(record.blobs().map(str::to_string));
            held.chains.extend(record.chain_ids().map(str::to_string));
        }
        Ok(record)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.leases.lock().leases.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_last_as_long_as_their_lease() {
        let leases = Leases::default();
        let a = leases.begin();
        let b = leases.begin();
        a.hold(["sha256:blob"], ["sha256:c1", "sha256:c2"]);
        b.hold([], ["sha256:c2", "sha256:c3"]);
        let (blobs, chains) = leases.lock().held();
        assert_eq!(blobs, HashSet::from(["sha256:blob".to_string()]));
        assert_eq!(chains.len(), 3);
        drop(a);
        let (blobs, chains) = leases.lock().held();
        assert!(blobs.is_empty());
        assert_eq!(
            chains,
            HashSet::from(["sha256:c2".to_string(), "sha256:c3".to_string()])
        );
        drop(b);
        assert_eq!(leases.lock().held(), (HashSet::new(), HashSet::new()));
    }

    #[test]
    fn a_durable_lease_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Lease::read(dir.path()).is_none());
        let lease = Lease {
            image_id: "sha256:i".into(),
            chain_ids: vec!["sha256:c".into()],
        };
        lease.write(dir.path()).unwrap();
        let read = Lease::read(dir.path()).unwrap();
        assert_eq!(read.chain_ids, lease.chain_ids);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lease.json"]);
    }
}
