//! Local-directory backend: the embedded default on one machine.
//!
//! Each key is a file. A writer takes an exclusive `flock` on `<file>.lock`, checks the
//! current version, writes a temporary file in the same directory, fsyncs it and renames
//! it over the old one, then fsyncs the directory. Readers need no lock: `rename` is
//! atomic, so they see the old or the new document, never half of one. `flock` is
//! released by the kernel when a writer dies, so a crash never leaves the store locked.
//! The version is a SHA-256 of the content (every write carries a fresh `write_id`, so
//! two writes never share one).

use super::{StateError, StateStore, Stored, Version};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

const STORE: &str = "local";

/// Documents as files under one directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Use (and create) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StateError> {
        let rel = Path::new(key);
        let clean = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(StateError::Backend {
                store: STORE,
                message: format!("key {key:?} is not a relative path without `..`"),
            });
        }
        Ok(self.root.join(rel))
    }
}

fn io_err(path: &Path, e: std::io::Error) -> StateError {
    StateError::Backend {
        store: STORE,
        message: format!("{}: {e}", path.display()),
    }
}

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(&Sha256::digest(bytes)[..16]))
}

fn read(path: &Path) -> Result<Option<Stored>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(Stored {
            version: version_of(&bytes),
            bytes,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// An exclusive `flock`, released on drop (and by the kernel if the process dies).
struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, StateError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        // SAFETY: flock on a file descriptor we own for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(StateError::Lock(format!(
                "flock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn cas_blocking(
    path: &Path,
    key: &str,
    expected: Option<&Version>,
    bytes: &[u8],
) -> Result<Version, StateError> {
    let dir = path.parent().expect("a key path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut lock_name = path.file_name().expect("file name").to_os_string();
    lock_name.push(".lock");
    let _lock = FileLock::acquire(&dir.join(lock_name))?;
    let current = read(path)?.map(|s| s.version);
    if current.as_ref() != expected {
        return Err(StateError::Conflict {
            key: key.to_string(),
        });
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().expect("file name").to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(version_of(bytes))
}

#[async_trait]
impl StateStore for LocalStore {
    async fn load(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| StateError::Backend {
                store: STORE,
                message: e.to_string(),
            })?
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&Version>,
        bytes: Vec<u8>,
    ) -> Result<Version, StateError> {
        let path = self.path(key)?;
        let key = key.to_string();
        let expected = expected.cloned();
        tokio::task::spawn_blocking(move || cas_blocking(&path, &key, expected.as_ref(), &bytes))
            .await
            .map_err(|e| StateError::Backend {
                store: STORE,
                message: e.to_string(),
            })?
    }

    fn describe(&self) -> String {
        format!(
            "local directory {} (flock + atomic rename)",
            self.root.display()
        )
    }
}
