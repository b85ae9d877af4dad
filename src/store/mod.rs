//! Durable metadata: sandboxes, containers, images and settings in one redb
//! database (`<root>/crius.redb`).
//!
//! Invariants:
//! - A write returns only after its transaction is committed and fsynced, so an
//!   RPC that answered success survives a crash of criusd or the node.
//! - Values are JSON: readable with any redb tool, and new fields can be added
//!   with serde defaults without a migration.
//! - `meta.schema_version` says the layout; a database written by a newer
//!   criusd is refused rather than misread.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorKind};

/// The layout this criusd reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");

/// A kind of record, each in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Sandboxes,
    Containers,
    Images,
    /// Node-wide settings, such as the pod CIDR kubelet sent.
    Settings,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Sandboxes => SANDBOXES,
            Table::Containers => CONTAINERS,
            Table::Images => IMAGES,
            Table::Settings => SETTINGS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "metadata database {path} has schema version {found}, newer than this criusd supports ({SCHEMA_VERSION}); run a newer criusd"
    )]
    SchemaTooNew { path: PathBuf, found: u64 },
    #[error("metadata database: {0}")]
    Db(#[from] redb::Error),
    #[error("metadata record {table:?}/{key} is corrupt: {source}")]
    Corrupt {
        table: Table,
        key: String,
        source: serde_json::Error,
    },
    #[error("cannot encode metadata record {table:?}/{key}: {source}")]
    Encode {
        table: Table,
        key: String,
        source: serde_json::Error,
    },
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::SchemaTooNew { .. } => ErrorKind::FailedPrecondition,
            _ => ErrorKind::Internal,
        }
    }
}

/// Converts the many redb error types into ours.
fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `<root>/crius.redb`. redb holds a file lock, so a
    /// second daemon on the same root fails here too.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let path = root.join("crius.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Store { db, path };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let found = meta.get("schema_version").map_err(db)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: self.path.clone(),
                        found,
                    });
                }
                // Older layouts would be migrated here; version 1 is the first.
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).map_err(db)?;
                }
            }
            for table in [
                Table::Sandboxes,
                Table::Containers,
                Table::Images,
                Table::Settings,
            ] {
                txn.open_table(table.definition()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta
            .get("schema_version")
            .map_err(db)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Inserts or replaces a record; durable when this returns.
    pub fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            table,
            key: key.to_string(),
            source,
        })?;
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(table.definition())
            .map_err(db)?
            .insert(key, bytes.as_slice())
            .map_err(db)?;
        txn.commit().map_err(db)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(table.definition()).map_err(db)?;
        let Some(value) = t.get(key).map_err(db)? else {
            return Ok(None);
        };
        decode(table, key, value.value()).map(Some)
    }

    /// Every record of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(table.definition()).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            let (key, value) = item.map_err(db)?;
            let key = key.value().to_string();
            let record = decode(table, &key, value.value())?;
            out.push((key, record));
        }
        Ok(out)
    }

    /// Removes a record; `Ok(false)` when there was none.
    pub fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let existed = txn
            .open_table(table.definition())
            .map_err(db)?
            .remove(key)
            .map_err(db)?
            .is_some();
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .put(
                    Table::Sandboxes,
                    "b",
                    &Rec {
                        name: "two".into(),
                        n: 2,
                    },
                )
                .unwrap();
            store
                .put(
                    Table::Sandboxes,
                    "a",
                    &Rec {
                        name: "one".into(),
                        n: 1,
                    },
                )
                .unwrap();
            store
                .put(
                    Table::Containers,
                    "a",
                    &Rec {
                        name: "c".into(),
                        n: 3,
                    },
                )
                .unwrap();
            assert!(store.delete(Table::Containers, "a").unwrap());
            assert!(!store.delete(Table::Containers, "a").unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let all: Vec<(String, Rec)> = store.list(Table::Sandboxes).unwrap();
        assert_eq!(
            all.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            store.get::<Rec>(Table::Sandboxes, "b").unwrap().unwrap().n,
            2
        );
        assert!(store.get::<Rec>(Table::Containers, "a").unwrap().is_none());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("newer than this criusd supports"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put(Table::Images, "x", &"just a string").unwrap();
        let err = store.get::<Rec>(Table::Images, "x").unwrap_err();
        assert!(err.to_string().contains("Images/x"), "{err}");
    }
}
