//! `--mode catchup`: catch-up time vs snapshot age under the steady write load — what
//! `ops.snapshot_interval_secs` trades. A clone replays the WAL written since its
//! snapshot, so a snapshot taken ahead of time saves the snapshot phase but costs
//! catch-up in proportion to its age.
//!
//! Each round takes one snapshot of the seed, then clones it when it is `age` seconds
//! old, for every age in increasing order (one snapshot serves a round: the ages cannot
//! be alternated within it, since a snapshot only gets older), boots the clone and waits
//! until it is caught up by the product's readiness. The WAL rate is measured on the
//! primary over the whole bench.

use super::{median, range, secs, Bench};
use pgsurge::cloud::Cloud;
use std::path::Path;
use std::time::{Duration, Instant};

/// One clone of a snapshot of a given age.
pub struct AgeRun {
    /// The age asked for (seconds): the table's rows.
    pub age: u64,
    pub round: usize,
    /// The snapshot's age when the clone started (the previous age's clone, boot and
    /// catch-up can push it past `age`).
    pub actual_age_s: f64,
    pub clone_s: f64,
    pub boot_s: f64,
    pub catch_up_s: f64,
    pub wal_mb: f64,
}

impl AgeRun {
    fn total(&self) -> f64 {
        self.clone_s + self.boot_s + self.catch_up_s
    }
}

/// What the primary wrote while the bench ran.
pub struct WalRate {
    pub mib_per_s: f64,
}

impl Bench<'_> {
    pub async fn catchup_rounds(&self, ages: &[u64], runs: usize) -> (Vec<AgeRun>, WalRate) {
        let first = super::lsn_of(&self.primary.current_lsn());
        let t0 = Instant::now();
        let mut out = Vec::new();
        for round in 0..runs {
            let name = format!("pgsurge-bench-age-{round}");
            let (snap, snap_s) = self.snapshot(&name).await;
            let taken = Instant::now();
            for &age in ages {
                tokio::time::sleep(Duration::from_secs(age).saturating_sub(taken.elapsed())).await;
                let vname = format!("{name}-{age}");
                let actual_age_s = secs(taken);
                let (vol, clone_s) = self.clone_volume(&snap.id, &vname).await;
                let (server, start, boot_s) = self.boot(&vol.id, &vname).await;
                let (catch_up_s, wal_mb) = self.catch_up(&server, start).await;
                self.remove(&server.id, &vol.id).await;
                eprintln!(
                    "  round {}, age {age} s (actual {actual_age_s:.0} s, snapshot took {snap_s:.1} s): \
                     clone {clone_s:.1} s, boot {boot_s:.1} s, catch-up {catch_up_s:.1} s, WAL {wal_mb:.0} MiB",
                    round + 1
                );
                out.push(AgeRun {
                    age,
                    round: round + 1,
                    actual_age_s,
                    clone_s,
                    boot_s,
                    catch_up_s,
                    wal_mb,
                });
            }
            self.cloud.delete_snapshot(&snap.id).await.unwrap();
        }
        let last = super::lsn_of(&self.primary.current_lsn());
        let rate = WalRate {
            mib_per_s: first.bytes_until(last) as f64 / 1048576.0 / secs(t0),
        };
        (out, rate)
    }
}

pub fn write_csv(runs: &[AgeRun], path: &Path) {
    let mut out = String::from("age_s,run,actual_age_s,clone_s,boot_s,catch_up_s,total_s,wal_mb\n");
    for r in runs {
        out.push_str(&format!(
            "{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.1}\n",
            r.age,
            r.round,
            r.actual_age_s,
            r.clone_s,
            r.boot_s,
            r.catch_up_s,
            r.total(),
            r.wal_mb
        ));
    }
    super::write_file(path, &out);
}

pub fn print_table(runs: &[AgeRun], ages: &[u64], db_mb: u64, rate: u32, wal: &WalRate) {
    let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
    println!(
        "\n{:.2} GiB database, write load {rate} tx/s (10 rows each) = {:.2} MiB/s of WAL on the \
         primary; XFS reflink pool; medians of {rounds} rounds (min–max); seconds.\n",
        db_mb as f64 / 1024.0,
        wal.mib_per_s
    );
    println!(
        "| snapshot age | clone | boot | **catch-up** (min–max) | clone → caught up (min–max) | WAL replayed, MiB (min–max) | replay, MiB/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &age in ages {
        let rs: Vec<&AgeRun> = runs.iter().filter(|r| r.age == age).collect();
        let col = |f: fn(&AgeRun) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let mm = |v: &[f64], d: usize| {
            let (lo, hi) = range(v);
            let m = median(v.to_vec());
            format!("{m:.d$} ({lo:.d$}–{hi:.d$})")
        };
        let catch = col(|r| r.catch_up_s);
        let wal = col(|r| r.wal_mb);
        // Replay speed only means something when there was something to wait for.
        let speed = median(
            rs.iter()
                .filter(|r| r.catch_up_s > 0.2)
                .map(|r| r.wal_mb / r.catch_up_s)
                .collect(),
        );
        println!(
            "| {age} s | {:.1} | {:.1} | **{}** | {} | {} | {} |",
            median(col(|r| r.clone_s)),
            median(col(|r| r.boot_s)),
            mm(&catch, 1),
            mm(&col(AgeRun::total), 1),
            mm(&wal, 0),
            if speed.is_nan() {
                "–".to_string()
            } else {
                format!("{speed:.0}")
            },
        );
    }
}
