//! Copy a directory tree file by file: copy-on-write (`FICLONE`) where the filesystem
//! can, a plain byte copy where it cannot.
//!
//! `FICLONE` makes the destination share the source's extents (XFS with `reflink=1`,
//! btrfs): O(1) in the file's size, and XFS takes the file's I/O lock, so each file is
//! cloned at one point in time even while PostgreSQL writes to it. A plain copy reads
//! the file while it may change; for a live data directory that is what backup mode and
//! full-page writes exist for (see `snapshot.rs`).
//!
//! Modes, ownership and symlinks are kept. Files that vanish while the tree is walked
//! (a table dropped, a temp file removed) are skipped, as `pg_basebackup` does.

use crate::cloud::local::CloneMode;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Files copied (or cloned) at once.
pub const THREADS: usize = 4;

/// How the files of one tree were copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every file shares its extents with the source (copy-on-write).
    Reflink,
    /// At least one file was copied byte by byte.
    Copy,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Reflink => "reflink (copy-on-write)",
            Method::Copy => "plain copy",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("copy-on-write is not supported for {path} ({source}); use a pool on XFS with reflink=1 or btrfs, or set local.clone = \"auto\"")]
    NoReflink { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CloneError + '_ {
    move |source| CloneError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What to leave out of a tree, by path relative to its root.
pub trait Skip: Sync {
    /// Leave this file or directory out entirely.
    fn skip(&self, rel: &Path) -> bool;
    /// Create this directory but copy none of its contents.
    fn empty_dir(&self, rel: &Path) -> bool;
}

/// Copy everything.
pub struct Everything;

impl Skip for Everything {
    fn skip(&self, _: &Path) -> bool {
        false
    }
    fn empty_dir(&self, _: &Path) -> bool {
        false
    }
}

/// Counts for the log line and the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub cloned: u64,
    pub copied: u64,
}

impl Stats {
    pub fn method(&self) -> Method {
        if self.copied == 0 {
            Method::Reflink
        } else {
            Method::Copy
        }
    }

    pub fn add(&mut self, o: &Stats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.cloned += o.cloned;
        self.copied += o.copied;
    }
}

/// Copies files with the configured [`CloneMode`], remembering when the filesystem has
/// refused a clone so `auto` stops trying.
pub struct Cloner {
    mode: CloneMode,
    reflink_works: std::sync::atomic::AtomicBool,
    as_root: bool,
}

impl Cloner {
    pub fn new(mode: CloneMode) -> Cloner {
        Cloner {
            mode,
            reflink_works: std::sync::atomic::AtomicBool::new(mode != CloneMode::Copy),
            // SAFETY: geteuid has no preconditions and cannot fail.
            as_root: unsafe { libc::geteuid() } == 0,
        }
    }

    /// Copy the tree at `src` into `dst` (created; must not exist), minus what `skip` says.
    ///
    /// Directories and symlinks are made first, in one pass; then the files, by
    /// [`THREADS`] threads (storage answers several requests at once far faster than one
    /// after the other, for clones and copies alike). Returns once every file is done.
    pub fn copy_tree(&self, src: &Path, dst: &Path, skip: &dyn Skip) -> Result<Stats, CloneError> {
        let meta = fs::symlink_metadata(src).map_err(io_err(src))?;
        self.make_dir(dst, &meta)?;
        let mut files = Vec::new();
        self.walk(src, dst, Path::new(""), skip, &mut files)?;
        self.copy_files(&files)
    }

    fn copy_files(&self, files: &[(PathBuf, PathBuf)]) -> Result<Stats, CloneError> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Result<Stats, CloneError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS.min(files.len().max(1)))
                .map(|_| {
                    scope.spawn(|| {
                        let mut stats = Stats::default();
                        while !failed.load(Ordering::Relaxed) {
                            let Some((s, d)) = files.get(next.fetch_add(1, Ordering::Relaxed))
                            else {
                                break;
                            };
                            if let Err(e) = self.copy_file(s, d, &mut stats) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        Ok(stats)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("copy worker panicked"))
                .collect()
        });
        let mut total = Stats::default();
        for r in results {
            total.add(&r?);
        }
        Ok(total)
    }

    fn walk(
        &self,
        src: &Path,
        dst: &Path,
        rel: &Path,
        skip: &dyn Skip,
        files: &mut Vec<(PathBuf, PathBuf)>,
    ) -> Result<(), CloneError> {
        let entries = match fs::read_dir(src) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(src)(e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(src)(e)),
            };
            let name = entry.file_name();
            let rel = rel.join(&name);
            if skip.skip(&rel) {
                continue;
            }
            let (s, d) = (src.join(&name), dst.join(&name));
            let meta = match fs::symlink_metadata(&s) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&s)(e)),
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                self.make_dir(&d, &meta)?;
                if !skip.empty_dir(&rel) {
                    self.walk(&s, &d, &rel, skip, files)?;
                }
            } else if ft.is_symlink() {
                let target = match fs::read_link(&s) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&s)(e)),
                };
                std::os::unix::fs::symlink(&target, &d).map_err(io_err(&d))?;
                self.own(&d, &meta)?;
            } else if ft.is_file() {
                files.push((s, d));
            }
            // Sockets, FIFOs and devices have no place in a data directory: skipped.
        }
        Ok(())
    }

    fn make_dir(&self, d: &Path, meta: &fs::Metadata) -> Result<(), CloneError> {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(d)(e)),
        }
        fs::set_permissions(d, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err(d))?;
        self.own(d, meta)
    }

    fn own(&self, d: &Path, meta: &fs::Metadata) -> Result<(), CloneError> {
        if self.as_root {
            std::os::unix::fs::lchown(d, Some(meta.uid()), Some(meta.gid())).map_err(io_err(d))?;
        }
        Ok(())
    }

    /// Copy one file to `dst`, replacing it if it exists. A source that has vanished is
    /// skipped (returns without counting).
    pub fn copy_file(&self, src: &Path, dst: &Path, stats: &mut Stats) -> Result<(), CloneError> {
        let mut from = match File::open(src) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(src)(e)),
        };
        let meta = from.metadata().map_err(io_err(src))?;
        match fs::remove_file(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dst)(e)),
        }
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.mode() & 0o7777)
            .open(dst)
            .map_err(io_err(dst))?;
        let cloned = self.try_clone(&from, &to, dst)?;
        if cloned {
            stats.cloned += 1;
        } else {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(src)(e)),
                };
                to.write_all(&buf[..n]).map_err(io_err(dst))?;
            }
            stats.copied += 1;
        }
        // The mode given to open() is filtered by the umask; set it exactly.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err(dst))?;
        self.own(dst, &meta)?;
        stats.files += 1;
        stats.bytes += to.metadata().map(|m| m.len()).unwrap_or(meta.len());
        Ok(())
    }

    /// `FICLONE` unless the mode or an earlier refusal says not to. `Ok(false)`: copy.
    fn try_clone(&self, from: &File, to: &File, dst: &Path) -> Result<bool, CloneError> {
        use std::sync::atomic::Ordering;
        if !self.reflink_works.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // SAFETY: both descriptors are open files owned by the caller for the whole call;
        // FICLONE takes the source descriptor as its argument.
        let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        let unsupported = matches!(
            err.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::EXDEV | libc::ENOSYS)
        );
        match (unsupported, self.mode) {
            (true, CloneMode::Auto) => {
                if self.reflink_works.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        path = %dst.display(),
                        error = %err,
                        "copy-on-write not supported here; falling back to plain copies"
                    );
                }
                Ok(false)
            }
            (true, _) => Err(CloneError::NoReflink {
                path: dst.display().to_string(),
                source: err,
            }),
            (false, _) => Err(io_err(dst)(err)),
        }
    }
}

/// Does the filesystem holding `dir` support `FICLONE`? (Clones a one-block file.)
pub fn probe_reflink(dir: &Path) -> bool {
    let a = dir.join(format!(".reflink-probe-a.{}", std::process::id()));
    let b = dir.join(format!(".reflink-probe-b.{}", std::process::id()));
    let result = (|| -> io::Result<bool> {
        fs::write(&a, [0u8; 4096])?;
        let from = File::open(&a)?;
        let to = File::create(&b)?;
        // SAFETY: both descriptors are open for the duration of the call.
        Ok(unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0)
    })();
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    result.unwrap_or(false)
}

/// Delete a directory tree, files by [`THREADS`] threads (see [`Cloner::copy_tree`]).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                collect(&e.path(), files)?;
            } else {
                files.push(e.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    let chunk = files.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        for part in files.chunks(chunk) {
            scope.spawn(move || {
                for f in part {
                    // Whatever fails here, remove_dir_all below reports.
                    let _ = fs::remove_file(f);
                }
            });
        }
    });
    fs::remove_dir_all(dir)
}

/// Read a small file that another process rewrites in place (pg_control) until two
/// reads agree, so the copy is never a torn mix of two versions.
pub fn read_stable(path: &Path) -> Result<Vec<u8>, CloneError> {
    let mut last = fs::read(path).map_err(io_err(path))?;
    for _ in 0..50 {
        let next = fs::read(path).map_err(io_err(path))?;
        if next == last {
            return Ok(next);
        }
        last = next;
    }
    Err(io_err(path)(io::Error::other(
        "kept changing while being read",
    )))
}

/// Flush the filesystem holding `dir`, so a copy survives a machine crash.
pub fn sync_fs(dir: &Path) -> Result<(), CloneError> {
    let f = File::open(dir).map_err(io_err(dir))?;
    // SAFETY: `f` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(io_err(dir)(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("base/1")).unwrap();
        fs::write(root.join("base/1/1234"), vec![7u8; 300_000]).unwrap();
        fs::write(root.join("PG_VERSION"), "15\n").unwrap();
        fs::write(root.join("empty"), "").unwrap();
        fs::set_permissions(root.join("base/1/1234"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(root.join("pg_stat_tmp")).unwrap();
        fs::write(root.join("pg_stat_tmp/x"), "x").unwrap();
        std::os::unix::fs::symlink("base/1", root.join("link")).unwrap();
    }

    struct NoStatTmp;
    impl Skip for NoStatTmp {
        fn skip(&self, rel: &Path) -> bool {
            rel == Path::new("empty")
        }
        fn empty_dir(&self, rel: &Path) -> bool {
            rel == Path::new("pg_stat_tmp")
        }
    }

    #[test]
    fn copies_contents_modes_and_links_and_honours_skips() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        tree(&src);
        let stats = Cloner::new(CloneMode::Copy)
            .copy_tree(&src, &dst, &NoStatTmp)
            .unwrap();
        assert_eq!(
            fs::read(dst.join("base/1/1234")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(fs::read_to_string(dst.join("PG_VERSION")).unwrap(), "15\n");
        let mode = fs::metadata(dst.join("base/1/1234")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("base/1")
        );
        assert!(!dst.join("empty").exists());
        assert!(dst.join("pg_stat_tmp").is_dir());
        assert!(!dst.join("pg_stat_tmp/x").exists());
        assert_eq!(stats.files, 2);
        assert_eq!(stats.bytes, 300_003);
        assert_eq!(stats.method(), Method::Copy);
    }

    #[test]
    fn auto_falls_back_to_copy_where_reflink_is_missing_and_reflink_mode_refuses() {
        // The scratch filesystem here is ext4/tmpfs: no FICLONE. (The XFS pool test in
        // tests/tests/local_provider.rs shows the copy-on-write side.)
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        tree(&src);
        let probe =
            Cloner::new(CloneMode::Reflink).copy_tree(&src, &t.path().join("r"), &Everything);
        let auto = Cloner::new(CloneMode::Auto)
            .copy_tree(&src, &t.path().join("a"), &Everything)
            .unwrap();
        match probe {
            Ok(stats) => {
                // Running on a reflink-capable filesystem after all: both clone.
                assert_eq!(stats.method(), Method::Reflink);
                assert_eq!(auto.method(), Method::Reflink);
            }
            Err(e) => {
                assert!(matches!(e, CloneError::NoReflink { .. }), "{e}");
                assert_eq!(auto.method(), Method::Copy);
                assert_eq!(auto.files, 4);
            }
        }
    }

    #[test]
    fn replaces_an_existing_destination_file() {
        let t = tempfile::tempdir().unwrap();
        let (s, d) = (t.path().join("s"), t.path().join("d"));
        fs::write(&s, "new").unwrap();
        fs::write(&d, "old and longer").unwrap();
        let mut st = Stats::default();
        Cloner::new(CloneMode::Auto)
            .copy_file(&s, &d, &mut st)
            .unwrap();
        assert_eq!(fs::read_to_string(&d).unwrap(), "new");
        // A vanished source is skipped, not an error.
        Cloner::new(CloneMode::Auto)
            .copy_file(&t.path().join("gone"), &t.path().join("x"), &mut st)
            .unwrap();
        assert_eq!(st.files, 1);
    }
}
