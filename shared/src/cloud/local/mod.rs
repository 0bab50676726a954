//! The local provider: [`Cloud`] on one machine, with real PostgreSQL.
//!
//! - a **volume** is a directory in the pool holding a PostgreSQL data directory;
//! - a **snapshot** is a consistent copy of a volume's data directory, taken while the
//!   replica on it keeps replaying WAL (`pg_backup_start`/`pg_backup_stop` on that
//!   replica, see [`snapshot`]); copy-on-write (`FICLONE`) where the pool's filesystem
//!   has it (XFS `reflink=1`, btrfs), plain copies elsewhere ([`clone`]);
//! - a **server** is a `postgres` process on its own loopback port, made a streaming
//!   standby of the primary by `infra/image/bootstrap-replica.sh`, the script the cloud
//!   image runs, from the server's user data ([`server`]).
//!
//! Records live next to the data ([`pool`]), so a re-run (another process, after a
//! crash) lists, adopts and deletes what an earlier run created. Deleting a server stops
//! its postgres and every process it started; deleting a volume removes its directory.
//!
//! Not part of the trait: [`LocalCloud::create_empty_volume`] makes a volume to fill by
//! hand (e.g. with `pg_basebackup`), for the seed replica that snapshots come from.

mod config;
pub use config::{CloneMode, LocalConfig};
pub mod clone;
pub mod pool;
mod seed;
pub mod server;
pub mod snapshot;
pub mod vm;

use self::clone::Cloner;
use self::pool::{fatal, Consistency, Kind, Pool, ServerInfo, SnapshotInfo, VolumeInfo};
use super::{
    Cloud, CloudError, Endpoint, Filter, Metadata, Result, Server, ServerRequest, Snapshot,
    SnapshotRequest, Status, Volume, VolumeRequest,
};
use crate::postgres::bootstrap::UserData;
use crate::postgres::PgClient;
use crate::postgres::PostgresConfig;
use async_trait::async_trait;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct LocalCloud {
    pool: Pool,
    cfg: LocalConfig,
    pg: PostgresConfig,
    client: PgClient,
    cloner: Arc<Cloner>,
    script: PathBuf,
    host: IpAddr,
    reflink: bool,
}

fn user_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string; the result is only tested for NULL.
    !unsafe { libc::getpwnam(c.as_ptr()) }.is_null()
}

impl LocalCloud {
    /// Open (create) the pool and check that everything the provider runs is there.
    pub fn new(local: &LocalConfig, pg: &PostgresConfig) -> Result<LocalCloud> {
        let postgres = local.pg_bin.join("postgres");
        if !postgres.exists() {
            return Err(CloudError::Fatal(format!(
                "`local.pg_bin`: {} not found: install PostgreSQL 15 (apt-get install postgresql-15)",
                postgres.display()
            )));
        }
        let script = std::fs::canonicalize(&local.bootstrap_script).map_err(|e| {
            CloudError::Fatal(format!(
                "`local.bootstrap_script`: {}: {e}",
                local.bootstrap_script.display()
            ))
        })?;
        if !user_exists(&local.os_user) {
            return Err(CloudError::Fatal(format!(
                "`local.os_user`: no user {:?} on this machine",
                local.os_user
            )));
        }
        let host: IpAddr = local.listen_host.parse().map_err(|_| {
            CloudError::Fatal(format!(
                "`local.listen_host`: {:?} is not an IP address",
                local.listen_host
            ))
        })?;
        let pool = Pool::open(&local.pool_dir)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // PostgreSQL runs as os_user and must reach its data directory below the pool.
            let ok = std::process::Command::new("runuser")
                .args(["-u", &local.os_user, "--", "test", "-x"])
                .arg(pool.root().join("volumes"))
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(CloudError::Fatal(format!(
                    "`local.pool_dir`: {} is not reachable by user {} (a parent directory is not searchable by it)",
                    pool.root().display(),
                    local.os_user
                )));
            }
        }
        let reflink = clone::probe_reflink(&pool.root().join("tmp"));
        tracing::info!(
            pool = %pool.root().display(),
            copy_on_write = reflink,
            clone_mode = ?local.clone,
            "local provider ready: snapshots and clones are {}",
            if reflink && local.clone != CloneMode::Copy {
                "copy-on-write (FICLONE)"
            } else {
                "plain copies"
            }
        );
        if local.clone == CloneMode::Reflink && !reflink {
            return Err(CloudError::Fatal(format!(
                "`local.clone` is \"reflink\" but {} has no copy-on-write (make an XFS pool with infra/local/pool-xfs.sh)",
                pool.root().display()
            )));
        }
        Ok(LocalCloud {
            pool,
            cfg: local.clone(),
            pg: pg.clone(),
            client: PgClient::new(pg),
            cloner: Arc::new(Cloner::new(local.clone)),
            script,
            host,
            reflink,
        })
    }

    /// Whether the pool's filesystem supports copy-on-write clones.
    pub fn supports_reflink(&self) -> bool {
        self.reflink
    }

    pub fn pool_dir(&self) -> &Path {
        self.pool.root()
    }

    /// The PostgreSQL data directory on a volume.
    pub fn data_dir(&self, volume_id: &str) -> PathBuf {
        self.pool.dir(Kind::Volume, volume_id).join("data")
    }

    pub fn volume_info(&self, id: &str) -> Result<VolumeInfo> {
        self.pool.read(Kind::Volume, id)
    }

    pub fn snapshot_info(&self, id: &str) -> Result<SnapshotInfo> {
        self.pool.read(Kind::Snapshot, id)
    }

    pub fn server_info(&self, id: &str) -> Result<ServerInfo> {
        self.pool.read(Kind::Server, id)
    }

    /// The server's PostgreSQL log.
    pub fn server_log(&self, id: &str) -> PathBuf {
        self.pool.dir(Kind::Server, id).join("postgres.log")
    }

    /// A volume with an empty data directory (owned by `local.os_user`, mode 0700) to be
    /// filled by hand, e.g. `pg_basebackup -D <data_dir>`: how the seed replica that
    /// snapshots are taken of gets into the pool.
    pub async fn create_empty_volume(&self, name: &str, metadata: &Metadata) -> Result<Volume> {
        let id = uuid::Uuid::new_v4().to_string();
        let work = self.pool.work_dir(&id)?;
        let result = (|| {
            let data = work.join("data");
            std::fs::create_dir(&data).map_err(|e| fatal(data.display(), e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fatal(data.display(), e))?;
            let status = std::process::Command::new("chown")
                .arg(format!("{0}:", self.cfg.os_user))
                .arg(&data)
                .status()
                .map_err(|e| fatal("chown", e))?;
            if !status.success() {
                return Err(CloudError::Fatal(format!(
                    "cannot give {} to {}",
                    data.display(),
                    self.cfg.os_user
                )));
            }
            let info = VolumeInfo {
                id: id.clone(),
                name: name.to_string(),
                metadata: metadata.clone(),
                az: None,
                snapshot_id: None,
                created_at: pool::now(),
                size_gb: 1,
                bytes: 0,
                method: None,
            };
            Pool::write_meta(&work, &info)?;
            self.pool.publish(&work, Kind::Volume, &id)?;
            Ok(volume(info))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result
    }

    fn servers_on(&self, volume_id: &str) -> Result<Vec<ServerInfo>> {
        Ok(self
            .pool
            .list::<ServerInfo>(Kind::Server)?
            .into_iter()
            .filter(|s| s.volume_id == volume_id)
            .collect())
    }

    fn server(&self, info: ServerInfo) -> Server {
        let dir = self.pool.dir(Kind::Server, &info.id);
        let status = if vm::is_vm(&dir) {
            vm::status(&dir)
        } else {
            server::status(
                &self.data_dir(&info.volume_id),
                server::read_recorded_pid(&dir),
                &dir,
            )
        };
        Server {
            id: info.id,
            name: info.name,
            status,
            az: info.az,
            metadata: info.metadata,
            volume_ids: vec![info.volume_id],
            endpoint: Some(Endpoint {
                host: info.host,
                port: info.port,
            }),
            fault: None,
        }
    }

    /// The bootstrap parameters for a server: the request's user data, defaults from
    /// `[postgres]` for what it leaves out (and the password, which never travels in user
    /// data), and the local facts this provider decides (data dir, port, log, ...).
    fn params(&self, req: &ServerRequest, port: u16, dir: &Path, data: &Path) -> Result<UserData> {
        let bad = |e: crate::postgres::bootstrap::UserDataError| {
            CloudError::Fatal(format!("server {}: user data: {e}", req.name))
        };
        let mut ud = match &req.user_data {
            // The server's own keys (`PGSURGE_*`) are the image's first-boot step's; this
            // provider is that step here, so the script gets the rest.
            Some(text) => crate::node::params::bootstrap_part(text)
                .map_err(|e| CloudError::Fatal(format!("server {}: user data: {e}", req.name)))?,
            None => UserData::default(),
        };
        let pg = &self.pg;
        for (k, v) in [
            ("PRIMARY_HOST", pg.primary_host.clone()),
            ("PRIMARY_PORT", pg.primary_port.to_string()),
            ("REPLICATION_USER", pg.replication_user.clone()),
            ("PRIMARY_SSLMODE", pg.sslmode.clone()),
            ("CLUSTER_NAME", req.name.clone()),
            ("APPLICATION_NAME", req.name.clone()),
        ] {
            ud.set_default(k, v).map_err(bad)?;
        }
        if !pg.primary_conninfo_sslrootcert.is_empty() {
            ud.set_default("PRIMARY_SSLROOTCERT", &pg.primary_conninfo_sslrootcert)
                .map_err(bad)?;
        }
        if let Some(pw) = &pg.password {
            ud.set_default("REPLICATION_PASSWORD", pw.expose())
                .map_err(bad)?;
        }
        for (k, v) in [
            ("PGDATA", data.display().to_string()),
            ("PORT", port.to_string()),
            ("LISTEN_ADDRESSES", self.host.to_string()),
            // No Unix socket: TCP on loopback only, and no path-length limits.
            ("SOCKET_DIR", String::new()),
            ("PG_BIN", self.cfg.pg_bin.display().to_string()),
            ("PG_USER", self.cfg.os_user.clone()),
            ("LOG_FILE", dir.join("postgres.log").display().to_string()),
            ("START", "yes".into()),
            ("START_TIMEOUT", self.cfg.start_timeout_secs.to_string()),
        ] {
            ud.set(k, v).map_err(bad)?;
        }
        Ok(ud)
    }

    async fn copy_into_pool<T>(
        &self,
        kind: Kind,
        id: &str,
        make: impl std::future::Future<Output = Result<(clone::Stats, T)>>,
        work: &Path,
    ) -> Result<(clone::Stats, T)> {
        let result = async {
            let out = make.await?;
            // syncfs blocks until the pool's filesystem is flushed, seconds on a busy
            // disk: off the async threads, or the other clones of one scale-up (joined
            // in the same task) would wait for it instead of copying.
            let dir = work.to_path_buf();
            tokio::task::spawn_blocking(move || clone::sync_fs(&dir))
                .await
                .map_err(|e| fatal("sync task", e))?
                .map_err(|e| fatal("sync", e))?;
            Ok(out)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(work);
            tracing::warn!(
                kind = kind.noun(),
                id,
                "creation failed; partial copy removed"
            );
        }
        result
    }
}

fn volume(v: VolumeInfo) -> Volume {
    Volume {
        id: v.id,
        name: v.name,
        status: Status::Ready,
        size_gb: v.size_gb,
        az: v.az,
        snapshot_id: v.snapshot_id,
        metadata: v.metadata,
    }
}

fn snapshot(s: SnapshotInfo) -> Snapshot {
    Snapshot {
        id: s.id,
        name: s.name,
        volume_id: s.volume_id,
        status: Status::Ready,
        size_gb: s.size_gb,
        created_at: s.created_at,
        az: None,
        metadata: s.metadata,
    }
}

#[async_trait]
impl Cloud for LocalCloud {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn create_snapshot(&self, req: &SnapshotRequest) -> Result<Snapshot> {
        let vol: VolumeInfo = self.pool.read(Kind::Volume, &req.volume_id)?;
        let src = self.data_dir(&vol.id);
        let attached = self.servers_on(&vol.id)?;
        let running = attached.iter().find_map(|s| {
            let recorded = server::read_recorded_pid(&self.pool.dir(Kind::Server, &s.id));
            server::running_postmaster(&src, recorded).map(|_| s)
        });
        if !attached.is_empty() && !req.force {
            return Err(CloudError::Conflict(format!(
                "volume {} is attached to server {}; snapshot it with force (live, in backup mode)",
                vol.id, attached[0].id
            )));
        }
        if running.is_none() && server::running_postmaster(&src, None).is_some() {
            return Err(CloudError::Conflict(format!(
                "a postgres this pool did not start runs on volume {}",
                vol.id
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let work = self.pool.work_dir(&id)?;
        let dst = work.join("data");
        let started = Instant::now();
        let (stats, consistency) = match running {
            Some(s) => {
                let at = Endpoint {
                    host: s.host.clone(),
                    port: s.port,
                };
                let label = format!("pgsurge snapshot {id}");
                let take = snapshot::take_live(
                    &self.client,
                    &at,
                    src,
                    dst,
                    self.cloner.clone(),
                    &label,
                    self.cfg.checkpoint_primary,
                );
                self.copy_into_pool(Kind::Snapshot, &id, take, &work)
                    .await?
            }
            None => {
                let take = snapshot::take_cold(src, dst, self.cloner.clone());
                self.copy_into_pool(Kind::Snapshot, &id, take, &work)
                    .await?
            }
        };
        let info = SnapshotInfo {
            id: id.clone(),
            name: req.name.clone(),
            volume_id: vol.id.clone(),
            metadata: req.metadata.clone(),
            created_at: pool::now(),
            size_gb: pool::size_gb(stats.bytes),
            bytes: stats.bytes,
            method: stats.method(),
            consistency,
        };
        let publish = Pool::write_meta(&work, &info).and_then(|_| {
            self.pool.publish(&work, Kind::Snapshot, &id)?;
            Ok(())
        });
        if let Err(e) = publish {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
        let (start_lsn, stop_lsn) = match &info.consistency {
            Consistency::BackupMode {
                start_lsn,
                stop_lsn,
            } => (start_lsn.as_str(), stop_lsn.as_str()),
            Consistency::Cold => ("", ""),
        };
        tracing::info!(
            snapshot = %id,
            name = %info.name,
            volume = %vol.id,
            method = %info.method,
            consistency = if start_lsn.is_empty() { "cold" } else { "backup-mode" },
            start_lsn,
            stop_lsn,
            files = stats.files,
            bytes = stats.bytes,
            secs = started.elapsed().as_secs_f64(),
            "snapshot taken"
        );
        Ok(snapshot(info))
    }

    async fn get_snapshot(&self, id: &str) -> Result<Snapshot> {
        self.snapshot_info(id).map(snapshot)
    }

    async fn list_snapshots(&self, filter: &Filter) -> Result<Vec<Snapshot>> {
        Ok(self
            .pool
            .list::<SnapshotInfo>(Kind::Snapshot)?
            .into_iter()
            .filter(|s| filter.matches(&s.name, &s.metadata))
            .map(snapshot)
            .collect())
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        // Volumes cloned from it are independent copies: nothing depends on it.
        if self.pool.remove(Kind::Snapshot, id)? {
            tracing::info!(snapshot = %id, "snapshot deleted");
        }
        Ok(())
    }

    async fn create_volume(&self, req: &VolumeRequest) -> Result<Volume> {
        let snap: SnapshotInfo = self.pool.read(Kind::Snapshot, &req.snapshot_id)?;
        if let Some(size) = req.size_gb {
            if size < snap.size_gb {
                return Err(CloudError::Fatal(format!(
                    "volume {}: size {size} GiB is below its snapshot's {} GiB",
                    req.name, snap.size_gb
                )));
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let work = self.pool.work_dir(&id)?;
        let (src, dst) = (
            self.pool.dir(Kind::Snapshot, &snap.id).join("data"),
            work.join("data"),
        );
        let started = Instant::now();
        let cloner = self.cloner.clone();
        let copy = async move {
            tokio::task::spawn_blocking(move || {
                cloner
                    .copy_tree(&src, &dst, &clone::Everything)
                    .map(|s| (s, ()))
                    .map_err(|e| fatal("clone", e))
            })
            .await
            .map_err(|e| fatal("clone task", e))?
        };
        let (stats, ()) = self.copy_into_pool(Kind::Volume, &id, copy, &work).await?;
        let info = VolumeInfo {
            id: id.clone(),
            name: req.name.clone(),
            metadata: req.metadata.clone(),
            az: req.az.clone(),
            snapshot_id: Some(snap.id.clone()),
            created_at: pool::now(),
            size_gb: req.size_gb.unwrap_or(snap.size_gb),
            bytes: stats.bytes,
            method: Some(stats.method()),
        };
        let publish = Pool::write_meta(&work, &info).and_then(|_| {
            self.pool.publish(&work, Kind::Volume, &id)?;
            Ok(())
        });
        if let Err(e) = publish {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
        tracing::info!(
            volume = %id,
            name = %info.name,
            snapshot = %snap.id,
            method = %stats.method(),
            files = stats.files,
            bytes = stats.bytes,
            secs = started.elapsed().as_secs_f64(),
            "volume cloned from snapshot"
        );
        Ok(volume(info))
    }

    async fn get_volume(&self, id: &str) -> Result<Volume> {
        self.volume_info(id).map(volume)
    }

    async fn list_volumes(&self, filter: &Filter) -> Result<Vec<Volume>> {
        Ok(self
            .pool
            .list::<VolumeInfo>(Kind::Volume)?
            .into_iter()
            .filter(|v| filter.matches(&v.name, &v.metadata))
            .map(volume)
            .collect())
    }

    async fn delete_volume(&self, id: &str) -> Result<()> {
        let server = match self.servers_on(id)?.first() {
            Some(s) => Some(s.id.clone()),
            None if Pool::valid_id(id) => server::attached_to(&self.pool, id),
            None => None,
        };
        if let Some(s) = server {
            return Err(CloudError::Conflict(format!(
                "volume {id} is attached to server {s}; delete the server first"
            )));
        }
        if self.pool.remove(Kind::Volume, id)? {
            tracing::info!(volume = %id, "volume deleted");
        }
        Ok(())
    }

    async fn create_server(&self, req: &ServerRequest) -> Result<Server> {
        let vol: VolumeInfo = self.pool.read(Kind::Volume, &req.volume_id)?;
        let data = self.data_dir(&vol.id);
        if !data.join("PG_VERSION").is_file() {
            return Err(CloudError::Fatal(format!(
                "volume {} holds no PostgreSQL data directory",
                vol.id
            )));
        }
        if let Some(s) = self.servers_on(&vol.id)?.first() {
            return Err(CloudError::Conflict(format!(
                "volume {} is already attached to server {}",
                vol.id, s.id
            )));
        }
        if let Some(pid) = server::running_postmaster(&data, None) {
            return Err(CloudError::Conflict(format!(
                "a postgres this pool did not start (pid {pid}) runs on volume {}",
                vol.id
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.pool.dir(Kind::Server, &id);
        // Check the user data before claiming anything (port 0 is only a placeholder).
        self.params(req, 0, &dir, &data)?;
        server::attach(&self.pool, &vol.id, &id)?;
        let port = match server::claim_port(
            &self.pool,
            self.cfg.port_first,
            self.cfg.port_last,
            self.host,
            &id,
        ) {
            Ok(p) => p,
            Err(e) => {
                server::detach(&self.pool, &vol.id, &id);
                return Err(e);
            }
        };
        let info = ServerInfo {
            id: id.clone(),
            name: req.name.clone(),
            volume_id: vol.id.clone(),
            metadata: req.metadata.clone(),
            az: req.az.clone(),
            host: self.host.to_string(),
            port,
            created_at: pool::now(),
            flavor: req.flavor.clone(),
        };
        if self.cfg.servers == vm::ServerKind::Vm {
            return self.create_vm_server(req, info, &dir).await;
        }
        let params = self.params(req, port, &dir, &data)?;
        let created = (|| {
            let work = self.pool.work_dir(&id)?;
            Pool::write_meta(&work, &info)?;
            let file = work.join("bootstrap.env");
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Root-only: it holds the replication password.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| fatal(file.display(), e))?;
            f.write_all(params.render().as_bytes())
                .map_err(|e| fatal(file.display(), e))?;
            self.pool.publish(&work, Kind::Server, &id)
        })();
        if let Err(e) = created {
            server::release_port(&self.pool, port, &id);
            server::detach(&self.pool, &vol.id, &id);
            return Err(e);
        }
        if let Some(flavor) = &req.flavor {
            // Every local server is a postgres process on this machine: there is no size
            // to choose. Recorded in the server's meta.json (so a test can see the
            // decision reached the cloud), and said once here.
            tracing::info!(server = %id, flavor = %flavor, "flavor recorded, not applied: local servers have no sizes");
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(self.cfg.start_timeout_secs + 30);
        match server::run_bootstrap(&self.script, &dir, timeout).await {
            Ok(log) => {
                if let Some(pid) = server::running_postmaster(&data, None) {
                    let _ = std::fs::write(dir.join("postmaster.pid"), pid.to_string());
                }
                tracing::info!(
                    server = %id,
                    name = %req.name,
                    volume = %vol.id,
                    port,
                    secs = started.elapsed().as_secs_f64(),
                    bootstrap = %log,
                    "server started"
                );
                Ok(self.server(info))
            }
            Err(e) => {
                // Leave nothing behind: no process (only one on our port: ours), no
                // record, no port, no attachment.
                if server::pidfile_port(&data) == Some(port) {
                    let _ = server::stop(
                        &self.cfg.pg_bin,
                        &self.cfg.os_user,
                        &data,
                        None,
                        Duration::from_secs(self.cfg.stop_timeout_secs),
                    )
                    .await;
                }
                let _ = self.pool.remove(Kind::Server, &id);
                server::release_port(&self.pool, port, &id);
                server::detach(&self.pool, &vol.id, &id);
                Err(e)
            }
        }
    }

    async fn get_server(&self, id: &str) -> Result<Server> {
        self.server_info(id).map(|i| self.server(i))
    }

    async fn list_servers(&self, filter: &Filter) -> Result<Vec<Server>> {
        Ok(self
            .pool
            .list::<ServerInfo>(Kind::Server)?
            .into_iter()
            .filter(|s| filter.matches(&s.name, &s.metadata))
            .map(|s| self.server(s))
            .collect())
    }

    async fn delete_server(&self, id: &str) -> Result<()> {
        let info = match self.server_info(id) {
            Ok(i) => i,
            Err(CloudError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let dir = self.pool.dir(Kind::Server, id);
        if vm::is_vm(&dir) {
            vm::stop(&dir, Duration::from_secs(self.cfg.stop_timeout_secs)).await;
        }
        server::stop(
            &self.cfg.pg_bin,
            &self.cfg.os_user,
            &self.data_dir(&info.volume_id),
            server::read_recorded_pid(&dir),
            Duration::from_secs(self.cfg.stop_timeout_secs),
        )
        .await?;
        // Killed here: the record stays, its PostgreSQL is stopped for good (the server
        // reads as `error`); only a caller that recorded its proofs beforehand can finish.
        crate::failpoint::hit("local.delete_server.after_stop");
        self.pool.remove(Kind::Server, id)?;
        // Killed here: the port claim and the volume's attachment are stale (their owner
        // is gone), which `claim_port` and `attached_to` recognise.
        crate::failpoint::hit("local.delete_server.after_record");
        server::release_port(&self.pool, info.port, id);
        server::detach(&self.pool, &info.volume_id, id);
        tracing::info!(server = %id, name = %info.name, port = info.port, "server deleted");
        Ok(())
    }
}
