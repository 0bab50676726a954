//! The volume pool: one directory holding every volume, snapshot and server record.
//!
//! ```text
//! <pool>/volumes/<id>/meta.json + data/      a volume; data/ is a PGDATA
//! <pool>/snapshots/<id>/meta.json + data/    a snapshot: a consistent copy of a PGDATA
//! <pool>/servers/<id>/meta.json, bootstrap.env, postgres.log, postmaster.pid
//! <pool>/ports/<port>                        which server holds a port ("<id> <pid>")
//! <pool>/tmp/<id>.<pid>                      work in progress, renamed into place when done
//! ```
//!
//! A resource exists once its directory is in `volumes/`, `snapshots/` or `servers/`
//! with a `meta.json`. It is built under `tmp/` and renamed into place, so a crash
//! mid-copy never leaves a half-made volume that a re-run would adopt; leftovers of dead
//! processes are swept when the pool is opened. `tmp/` is inside the pool so the rename
//! is atomic and copy-on-write clones stay on one filesystem.

use super::clone::Method;
use crate::cloud::{CloudError, Metadata};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A volume's record (`meta.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub id: String,
    pub name: String,
    pub metadata: Metadata,
    pub az: Option<String>,
    /// The snapshot it was cloned from; `None` for a volume filled by hand (a seed).
    pub snapshot_id: Option<String>,
    pub created_at: String,
    pub size_gb: u64,
    pub bytes: u64,
    /// How its files were made from the snapshot's.
    pub method: Option<Method>,
}

/// How a snapshot was made consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Consistency {
    /// Copied while PostgreSQL ran, between `pg_backup_start` and `pg_backup_stop` on it;
    /// the snapshot carries the `backup_label` they returned.
    BackupMode { start_lsn: String, stop_lsn: String },
    /// Copied while no PostgreSQL ran on the volume.
    Cold,
}

/// A snapshot's record (`meta.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub metadata: Metadata,
    pub created_at: String,
    pub size_gb: u64,
    pub bytes: u64,
    pub method: Method,
    pub consistency: Consistency,
}

/// A server's record (`meta.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub metadata: Metadata,
    pub az: Option<String>,
    pub host: String,
    pub port: u16,
    pub created_at: String,
    /// The flavor the request named. Recorded, not applied: a local server has no size
    /// (see `LocalCloud::create_server`). Absent in records made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Volume,
    Snapshot,
    Server,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Volume => "volumes",
            Kind::Snapshot => "snapshots",
            Kind::Server => "servers",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
            Kind::Server => "server",
        }
    }
}

pub fn fatal(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CloudError {
    CloudError::Fatal(format!("{what}: {e}"))
}

/// The pool's directory layout and its records.
#[derive(Debug, Clone)]
pub struct Pool {
    root: PathBuf,
}

impl Pool {
    /// Create the layout when missing and sweep what dead processes left in `tmp/`.
    pub fn open(root: &Path) -> Result<Pool, CloudError> {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["", "volumes", "snapshots", "servers", "ports", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| fatal(d.display(), e))?;
            // The PostgreSQL user must be able to reach data directories below.
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                .map_err(|e| fatal(d.display(), e))?;
        }
        let pool = Pool {
            root: root.to_path_buf(),
        };
        pool.sweep_tmp();
        Ok(pool)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, kind: Kind, id: &str) -> PathBuf {
        self.root.join(kind.dir()).join(id)
    }

    pub fn ports_dir(&self) -> PathBuf {
        self.root.join("ports")
    }

    /// A fresh work directory under `tmp/`, named so a sweep knows whether its owner lives.
    pub fn work_dir(&self, id: &str) -> Result<PathBuf, CloudError> {
        let d = self
            .root
            .join("tmp")
            .join(format!("{id}.{}", std::process::id()));
        fs::create_dir(&d).map_err(|e| fatal(d.display(), e))?;
        Ok(d)
    }

    /// Remove `tmp/` entries whose creating process is gone.
    fn sweep_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !super::server::pid_alive(p)) {
                tracing::info!(path = %e.path().display(), "removing leftover of an interrupted operation");
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Ids are ours (UUIDs); anything else cannot name a resource, and must never reach
    /// a path (`../`).
    pub fn valid_id(id: &str) -> bool {
        uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
    }

    pub fn read<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<T, CloudError> {
        let not_found = || CloudError::NotFound {
            kind: kind.noun(),
            id: id.to_string(),
        };
        if !Pool::valid_id(id) {
            return Err(not_found());
        }
        let path = self.dir(kind, id).join("meta.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fatal(path.display(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found()),
            Err(e) => Err(fatal(path.display(), e)),
        }
    }

    /// Every record of a kind. Directories without a readable record are skipped with a
    /// warning (someone else's files, or a record being deleted).
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, CloudError> {
        let dir = self.root.join(kind.dir());
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| fatal(dir.display(), e))? {
            let e = e.map_err(|e| fatal(dir.display(), e))?;
            let id = e.file_name().to_string_lossy().into_owned();
            match self.read(kind, &id) {
                Ok(r) => out.push(r),
                Err(CloudError::NotFound { .. }) => {}
                Err(err) => tracing::warn!(%err, "skipping unreadable {} record", kind.noun()),
            }
        }
        Ok(out)
    }

    /// Write `meta.json` into `dir` atomically (temp file + rename).
    pub fn write_meta<T: Serialize>(dir: &Path, record: &T) -> Result<(), CloudError> {
        let tmp = dir.join("meta.json.tmp");
        let body = serde_json::to_vec_pretty(record).map_err(|e| fatal("record", e))?;
        fs::write(&tmp, body).map_err(|e| fatal(tmp.display(), e))?;
        fs::rename(&tmp, dir.join("meta.json")).map_err(|e| fatal(dir.display(), e))
    }

    /// Move a finished work directory into place: from now on the resource exists.
    pub fn publish(&self, work: &Path, kind: Kind, id: &str) -> Result<PathBuf, CloudError> {
        let dst = self.dir(kind, id);
        fs::rename(work, &dst).map_err(|e| fatal(dst.display(), e))?;
        Ok(dst)
    }

    /// Remove a resource's directory: first renamed out of sight (so it stops existing
    /// at once), then deleted. Gone already is fine: `Ok(false)`.
    pub fn remove(&self, kind: Kind, id: &str) -> Result<bool, CloudError> {
        if !Pool::valid_id(id) {
            return Ok(false);
        }
        let dir = self.dir(kind, id);
        let trash = self
            .root
            .join("tmp")
            .join(format!("{id}-deleting.{}", std::process::id()));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(fatal(dir.display(), e)),
        }
        super::clone::remove_tree(&trash).map_err(|e| fatal(trash.display(), e))?;
        Ok(true)
    }
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Size in whole GiB, rounded up, at least 1 (block-storage sizes are whole GiB).
pub fn size_gb(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 30).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_and_nothing_else() {
        let id = uuid::Uuid::new_v4().to_string();
        assert!(Pool::valid_id(&id));
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            &id.to_uppercase(),
            &id.replace('-', ""),
        ] {
            assert!(!Pool::valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_removal_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::open(t.path()).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let work = pool.work_dir(&id).unwrap();
        let rec = ServerInfo {
            id: id.clone(),
            name: "pgsurge-c-r1".into(),
            volume_id: "v".into(),
            metadata: Metadata::new(),
            az: None,
            host: "127.0.0.1".into(),
            port: 6500,
            created_at: now(),
            flavor: Some("m1.small".into()),
        };
        Pool::write_meta(&work, &rec).unwrap();
        assert!(matches!(
            pool.read::<ServerInfo>(Kind::Server, &id),
            Err(CloudError::NotFound { .. })
        ));
        pool.publish(&work, Kind::Server, &id).unwrap();
        assert_eq!(pool.read::<ServerInfo>(Kind::Server, &id).unwrap(), rec);
        assert_eq!(pool.list::<ServerInfo>(Kind::Server).unwrap(), vec![rec]);
        assert!(pool.remove(Kind::Server, &id).unwrap());
        assert!(!pool.remove(Kind::Server, &id).unwrap());
        assert!(pool.list::<ServerInfo>(Kind::Server).unwrap().is_empty());
        assert!(fs::read_dir(t.path().join("tmp")).unwrap().next().is_none());
    }

    #[test]
    fn sizes_round_up_to_whole_gib() {
        assert_eq!(size_gb(0), 1);
        assert_eq!(size_gb(1 << 30), 1);
        assert_eq!(size_gb((1 << 30) + 1), 2);
    }
}
