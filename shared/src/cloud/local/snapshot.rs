//! Consistent snapshots of a PostgreSQL data directory, also while it replays WAL.
//!
//! Copying a directory tree is not atomic, even file by file with copy-on-write, so a
//! copy of a running standby's files is a mix of moments. PostgreSQL's low-level backup
//! API makes such a mix recoverable, and works on a standby (this is what
//! `pg_basebackup` does against a standby, done by hand):
//!
//! 1. `pg_backup_start(label, fast => true)` on the source, in a session held open for
//!    the whole copy. On a standby it performs a restartpoint; recovery of the copy will
//!    start at its redo point, and full-page images from there on repair any page the
//!    copy caught half-written.
//! 2. Copy the data files (leaving out what `pg_basebackup` leaves out: postmaster.pid,
//!    temp files, pg_replslot, pg_stat_tmp, ...) and the WAL present now.
//! 3. `pg_backup_stop(false)`; write the `backup_label` (and `tablespace_map`) it returns
//!    into the copy. Without a label, recovery would start at whatever checkpoint the
//!    copied `pg_control` names, possibly later than some copied pages: corruption.
//! 4. Copy `global/pg_control` **last**. For a backup taken on a standby, recovery treats
//!    the copied `pg_control`'s `minRecoveryPoint` as the end of the backup, and the
//!    standby advances `minRecoveryPoint` before it writes any page: copied after every
//!    data file, it covers them all.
//! 5. Copy the WAL again, so the snapshot holds everything from the redo point to the
//!    backup end and can reach consistency without the primary's help.
//!
//! A volume with no PostgreSQL running on it is copied as is ("cold").

use super::clone::{read_stable, Cloner, Skip, Stats};
use super::pool::{fatal, Consistency};
use crate::cloud::CloudError;
use crate::model::Endpoint;
use crate::postgres::Lsn;
use crate::postgres::{PgClient, PgError};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What `pg_basebackup` leaves out of a running data directory, plus what this module
/// copies separately (the WAL, `pg_control`, the label).
pub struct LiveData;

impl Skip for LiveData {
    fn skip(&self, rel: &Path) -> bool {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("pgsql_tmp")
            || name == "pg_internal.init"
            || [
                "postmaster.pid",
                "postmaster.opts",
                "current_logfiles",
                "backup_label",
                "tablespace_map",
                "postgresql.auto.conf.tmp",
                "global/pg_control",
            ]
            .iter()
            .any(|s| rel == Path::new(s))
    }

    fn empty_dir(&self, rel: &Path) -> bool {
        [
            "pg_dynshmem",
            "pg_notify",
            "pg_serial",
            "pg_snapshots",
            "pg_stat_tmp",
            "pg_subtrans",
            "pg_replslot",
            "pg_wal",
        ]
        .iter()
        .any(|s| rel == Path::new(s))
    }
}

/// Skip every entry: copies a directory without its contents.
struct Nothing;

impl Skip for Nothing {
    fn skip(&self, _: &Path) -> bool {
        true
    }
    fn empty_dir(&self, _: &Path) -> bool {
        true
    }
}

/// The local provider copies one directory tree; refuse layouts it cannot copy whole.
pub fn check_layout(data: &Path) -> Result<(), CloudError> {
    if !data.join("PG_VERSION").is_file() {
        return Err(CloudError::Fatal(format!(
            "{} holds no PostgreSQL data directory (no PG_VERSION)",
            data.display()
        )));
    }
    let wal = data.join("pg_wal");
    if fs::symlink_metadata(&wal).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(CloudError::Fatal(format!(
            "{} is a symlink: the local provider snapshots the data directory only",
            wal.display()
        )));
    }
    let tblspc = data.join("pg_tblspc");
    if fs::read_dir(&tblspc).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CloudError::Fatal(format!(
            "{} has tablespaces: the local provider snapshots the data directory only",
            tblspc.display()
        )));
    }
    Ok(())
}

/// Which WAL files a snapshot needs: segments from the one holding the backup's start
/// (the redo point recovery begins at) onwards, plus every non-segment file (timeline
/// history). Older segments, which a replica with `wal_keep_size` may hold by the
/// gigabyte, are of no use to the copy.
#[derive(Debug, Clone, Copy)]
pub struct WalNeeded {
    pub start: Lsn,
    pub segment_size: u64,
}

impl WalNeeded {
    pub fn wants(&self, name: &str) -> bool {
        let seg = name.strip_suffix(".partial").unwrap_or(name);
        if seg.len() != 24 || !seg.bytes().all(|b| b.is_ascii_hexdigit()) {
            return true;
        }
        let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&seg[r], 16).unwrap_or(0);
        let per_log = 0x1_0000_0000 / self.segment_size.max(1);
        hex(8..16) * per_log + hex(16..24) >= self.start.0 / self.segment_size.max(1)
    }
}

/// WAL files already copied, with the source's modification time when copied.
pub type WalCopied = HashMap<std::ffi::OsString, Option<SystemTime>>;

/// Copy the WAL files the snapshot needs into `dst/pg_wal`, skipping files unchanged
/// since an earlier pass (`done`) and replacing ones that grew.
fn copy_wal(
    cloner: &Cloner,
    src: &Path,
    dst: &Path,
    needed: WalNeeded,
    done: &mut WalCopied,
) -> Result<Stats, CloudError> {
    let (from, to) = (src.join("pg_wal"), dst.join("pg_wal"));
    let mut stats = Stats::default();
    let status = from.join("archive_status");
    if status.is_dir() && !to.join("archive_status").exists() {
        // The directory, not its contents: which segments the source archived is the
        // source's business.
        cloner
            .copy_tree(&status, &to.join("archive_status"), &Nothing)
            .map_err(|e| fatal("copying WAL", e))?;
    }
    let entries = fs::read_dir(&from).map_err(|e| fatal(from.display(), e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() || !needed.wants(&name.to_string_lossy()) {
            continue;
        }
        let mtime = meta.modified().ok();
        if mtime.is_some() && done.get(&name) == Some(&mtime) {
            continue;
        }
        cloner
            .copy_file(&e.path(), &to.join(&name), &mut stats)
            .map_err(|e| fatal("copying WAL", e))?;
        done.insert(name, mtime);
    }
    Ok(stats)
}

/// Write `bytes` to `dst` with the owner and mode of `like`.
fn write_like(dst: &Path, bytes: &[u8], like: &Path) -> Result<(), CloudError> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::metadata(like).map_err(|e| fatal(like.display(), e))?;
    fs::write(dst, bytes).map_err(|e| fatal(dst.display(), e))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(|e| fatal(dst.display(), e))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(dst, Some(m.uid()), Some(m.gid()))
            .map_err(|e| fatal(dst.display(), e))?;
    }
    Ok(())
}

fn pg_err(e: PgError) -> CloudError {
    match e {
        PgError::Connect { .. } => CloudError::Transient(format!("snapshot: {e}")),
        other => CloudError::Fatal(format!("snapshot: {other}")),
    }
}

fn query_err(at: &Endpoint, what: &str) -> impl Fn(tokio_postgres::Error) -> CloudError {
    let endpoint = crate::postgres::client::addr(at);
    let what = what.to_string();
    move |e| {
        CloudError::Fatal(format!(
            "snapshot: {what} on {endpoint} failed: {}",
            crate::postgres::client::message(&e)
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CloudError> + Send + 'static,
) -> Result<T, CloudError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CloudError::Fatal(format!("copy task failed: {e}")))?
}

/// Checkpoint the primary and wait until the standby in `session` has replayed that
/// checkpoint, so the restartpoint `pg_backup_start` makes next is recent: a standby can
/// only restart where its primary checkpointed, and a clone replays everything from there.
async fn fresh_restartpoint_base(
    client: &PgClient,
    session: &tokio_postgres::Client,
    at: &Endpoint,
) -> Result<(), CloudError> {
    let in_recovery: bool = session
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(query_err(at, "pg_is_in_recovery"))?
        .get(0);
    if !in_recovery {
        // The source is a primary: pg_backup_start checkpoints it anyway.
        return Ok(());
    }
    let primary_at = client.primary().clone();
    let primary = client.connect(&primary_at).await.map_err(pg_err)?;
    let started = std::time::Instant::now();
    primary
        .batch_execute("CHECKPOINT")
        .await
        .map_err(query_err(
            &primary_at,
            "CHECKPOINT (grant pg_checkpoint, or set local.checkpoint_primary = false)",
        ))?;
    let target: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(query_err(&primary_at, "pg_current_wal_lsn"))?
        .get(0);
    drop(primary);
    let target: Lsn = target
        .parse()
        .map_err(|e| CloudError::Fatal(format!("primary: {e}")))?;
    let deadline = started + std::time::Duration::from_secs(60);
    loop {
        let replayed: Option<String> = session
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .map_err(query_err(at, "pg_last_wal_replay_lsn"))?
            .get(0);
        if replayed
            .and_then(|l| l.parse::<Lsn>().ok())
            .is_some_and(|l| l >= target)
        {
            tracing::debug!(
                secs = started.elapsed().as_secs_f64(),
                "source replica replayed the primary's checkpoint"
            );
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            // Still consistent, only slower to clone: go on with an older restartpoint.
            tracing::warn!(
                target_lsn = %target,
                "source replica did not replay the primary's checkpoint within 60 s; \
                 snapshotting from its last restartpoint"
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Snapshot the data directory `src` of the PostgreSQL running at `at` into `dst`.
pub async fn take_live(
    client: &PgClient,
    at: &Endpoint,
    src: PathBuf,
    dst: PathBuf,
    cloner: Arc<Cloner>,
    label: &str,
    checkpoint_primary: bool,
) -> Result<(Stats, Consistency), CloudError> {
    check_layout(&src)?;
    let t = std::time::Instant::now();
    let session = client.connect(at).await.map_err(pg_err)?;
    if checkpoint_primary {
        fresh_restartpoint_base(client, &session, at).await?;
    }
    let checkpoint_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let row = session
        .query_one(
            "SELECT pg_backup_start($1, true)::text, \
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
            &[&label],
        )
        .await
        .map_err(query_err(at, "pg_backup_start"))?;
    let start: String = row.get(0);
    let needed = WalNeeded {
        start: start
            .parse()
            .map_err(|e| CloudError::Fatal(format!("pg_backup_start: {e}")))?,
        segment_size: row.get::<_, i64>(1) as u64,
    };
    let backup_start_secs = t.elapsed().as_secs_f64();
    tracing::debug!(label, start_lsn = %start, "backup mode started on the source");
    let t = std::time::Instant::now();

    // If anything below fails, dropping `session` ends it, and PostgreSQL aborts the
    // backup by itself: nothing to undo on the source.
    let (s, d, c) = (src.clone(), dst.clone(), cloner.clone());
    let (mut stats, mut wal_done) = blocking(move || {
        let mut st = c
            .copy_tree(&s, &d, &LiveData)
            .map_err(|e| fatal("snapshot copy", e))?;
        let mut done = WalCopied::new();
        st.add(&copy_wal(&c, &s, &d, needed, &mut done)?);
        Ok((st, done))
    })
    .await?;

    let copy_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let row = session
        .query_one(
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)",
            &[],
        )
        .await
        .map_err(query_err(at, "pg_backup_stop"))?;
    let stop: String = row.get(0);
    let label_file: String = row.get(1);
    let spcmap: Option<String> = row.get(2);
    drop(session);

    let (s, d) = (src.clone(), dst.clone());
    let tail = blocking(move || {
        let like = s.join("PG_VERSION");
        write_like(&d.join("backup_label"), label_file.as_bytes(), &like)?;
        if let Some(map) = spcmap.filter(|m| !m.is_empty()) {
            write_like(&d.join("tablespace_map"), map.as_bytes(), &like)?;
        }
        let control = s.join("global/pg_control");
        let bytes = read_stable(&control).map_err(|e| fatal("pg_control", e))?;
        write_like(&d.join("global/pg_control"), &bytes, &control)?;
        let mut st = copy_wal(&cloner, &s, &d, needed, &mut wal_done)?;
        st.files += 1;
        st.bytes += bytes.len() as u64;
        Ok(st)
    })
    .await?;
    stats.add(&tail);
    // Where a snapshot's time goes: the primary's checkpoint and its replay, the
    // source's restartpoint, the copy, and the finish (label, pg_control, late WAL).
    tracing::info!(
        label,
        checkpoint_secs,
        backup_start_secs,
        copy_secs,
        finish_secs = t.elapsed().as_secs_f64(),
        "snapshot phases"
    );
    Ok((
        stats,
        Consistency::BackupMode {
            start_lsn: start,
            stop_lsn: stop,
        },
    ))
}

/// Snapshot a data directory no PostgreSQL runs on: a plain copy of everything.
pub async fn take_cold(
    src: PathBuf,
    dst: PathBuf,
    cloner: Arc<Cloner>,
) -> Result<(Stats, Consistency), CloudError> {
    check_layout(&src)?;
    let stats = blocking(move || {
        cloner
            .copy_tree(&src, &dst, &super::clone::Everything)
            .map_err(|e| fatal("snapshot copy", e))
    })
    .await?;
    Ok((stats, Consistency::Cold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_copies_leave_out_what_basebackup_leaves_out() {
        let s = LiveData;
        for p in [
            "postmaster.pid",
            "global/pg_control",
            "base/1/pgsql_tmp",
            "base/16384/pg_internal.init",
            "backup_label",
        ] {
            assert!(s.skip(Path::new(p)), "{p}");
        }
        for p in [
            "base/1/1259",
            "global/1262",
            "postgresql.auto.conf",
            "pg_wal",
        ] {
            assert!(!s.skip(Path::new(p)), "{p}");
        }
        assert!(s.empty_dir(Path::new("pg_wal")));
        assert!(s.empty_dir(Path::new("pg_replslot")));
        assert!(!s.empty_dir(Path::new("base")));
    }

    #[test]
    fn only_wal_from_the_backup_start_segment_on_is_needed() {
        let n = WalNeeded {
            start: "2/3A000028".parse().unwrap(),
            segment_size: 16 << 20,
        };
        assert!(!n.wants("000000010000000200000039"));
        assert!(n.wants("00000001000000020000003A"));
        assert!(n.wants("000000010000000300000000"));
        assert!(n.wants("00000002000000020000003B.partial"));
        assert!(!n.wants("000000010000000100000099.partial"));
        assert!(n.wants("00000002.history"));
        let big = WalNeeded {
            start: "2/40000000".parse().unwrap(),
            segment_size: 1 << 30,
        };
        assert!(!big.wants("000000010000000200000000"));
        assert!(big.wants("000000010000000200000001"));
    }

    #[test]
    fn refuses_layouts_it_cannot_copy_whole() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert!(check_layout(d)
            .unwrap_err()
            .to_string()
            .contains("PG_VERSION"));
        fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        fs::create_dir(d.join("pg_tblspc")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", d.join("pg_wal")).unwrap();
        assert!(check_layout(d).unwrap_err().to_string().contains("symlink"));
        fs::remove_file(d.join("pg_wal")).unwrap();
        fs::create_dir(d.join("pg_wal")).unwrap();
        check_layout(d).unwrap();
        std::os::unix::fs::symlink("/ts", d.join("pg_tblspc/16500")).unwrap();
        assert!(check_layout(d)
            .unwrap_err()
            .to_string()
            .contains("tablespaces"));
    }
}
