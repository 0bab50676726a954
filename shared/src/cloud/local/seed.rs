//! The first replica of a local pool: how a cluster's seed gets into the pool.
//!
//! Snapshots are taken of a replica that lives in the pool, so the first one cannot come
//! from a snapshot: it is made the way an operator makes a replica — `pg_basebackup` from
//! the primary into an empty pool volume — and then started by the provider with the
//! image's bootstrap script, like every other server. The demo (`pgsurge local seed`)
//! and the tests use this; nothing in the functions does.

use super::LocalCloud;
use crate::cloud::{Cloud, CloudError, Metadata, Server, ServerRequest, Volume};
use crate::postgres::bootstrap::UserData;

impl LocalCloud {
    /// A new volume filled by `pg_basebackup` from the configured primary, and a server
    /// started on it (not waited for beyond the bootstrap script). On failure nothing is
    /// left behind: the volume is deleted.
    pub async fn create_seed(
        &self,
        name: &str,
        metadata: &Metadata,
    ) -> Result<(Volume, Server), CloudError> {
        let vol = self.create_empty_volume(name, metadata).await?;
        let made = async {
            self.basebackup_into(&vol.id).await?;
            let user_data = UserData::for_replica(&self.pg, name)
                .map_err(|e| CloudError::Fatal(format!("bootstrap parameters: {e}")))?
                .render();
            self.create_server(&ServerRequest {
                name: name.to_string(),
                volume_id: vol.id.clone(),
                flavor: None,
                az: None,
                metadata: metadata.clone(),
                user_data: Some(user_data),
            })
            .await
        }
        .await;
        match made {
            Ok(srv) => Ok((vol, srv)),
            Err(e) => {
                let _ = self.delete_volume(&vol.id).await;
                Err(e)
            }
        }
    }

    /// `pg_basebackup` (as `local.os_user`, WAL streamed, fast checkpoint) from the
    /// primary into volume `id`'s empty data directory.
    async fn basebackup_into(&self, id: &str) -> Result<(), CloudError> {
        let pg = &self.pg;
        let conninfo = format!(
            "host={} port={} user={} sslmode={} dbname={} connect_timeout={}",
            pg.primary_host,
            pg.primary_port,
            pg.replication_user,
            pg.sslmode,
            pg.dbname,
            pg.connect_timeout_secs
        );
        let mut cmd = tokio::process::Command::new("runuser");
        cmd.args(["-u", &self.cfg.os_user, "--"])
            .arg(self.cfg.pg_bin.join("pg_basebackup"))
            .args(["-d", &conninfo, "-D"])
            .arg(self.data_dir(id))
            .args(["-X", "stream", "--checkpoint=fast", "--no-sync"]);
        // The password goes through the environment, never the command line.
        if let Some(pw) = &pg.password {
            cmd.env("PGPASSWORD", pw.expose());
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| CloudError::Fatal(format!("running pg_basebackup: {e}")))?;
        if !out.status.success() {
            return Err(CloudError::Fatal(format!(
                "pg_basebackup from {}:{} failed: {}",
                pg.primary_host,
                pg.primary_port,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}
