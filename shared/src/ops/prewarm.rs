//! Pre-warm (optional, `[ops.prewarm]`): after a standby is proven caught up and before
//! HAProxy sends it traffic, load the hottest relations into its shared buffers with
//! `pg_prewarm`, within a time budget, so its first queries do not all read from disk.
//!
//! Best effort by design: a replica that cannot be pre-warmed (no `pg_prewarm` extension,
//! a relation that does not exist, the budget spent) is registered anyway — a cold
//! replica serves, only slower; holding capacity back for a cache would defeat the point.
//! Nothing is recorded: loading pages twice is harmless, so a killed run needs no repair.

use super::{phase_metric, Ports};
use crate::check::{in_range, invalid, Checked};
use crate::model::Endpoint;
use crate::postgres::PrewarmTarget as Target;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrewarmConfig {
    /// Relations to load, hottest first: `db.schema.relation`, `db.relation` (schema
    /// `public`). Empty (the default): no pre-warm. The database needs the extension:
    /// `CREATE EXTENSION pg_prewarm` on the primary (it replicates).
    pub relations: Vec<String>,
    /// Longest time spent pre-warming one replica; what is left of the list is skipped
    /// (each statement runs under `statement_timeout` = what is left).
    pub budget_secs: u64,
}

impl Default for PrewarmConfig {
    fn default() -> Self {
        PrewarmConfig {
            relations: Vec::new(),
            budget_secs: 20,
        }
    }
}

/// `db.schema.relation` or `db.relation` → a target; anything else is `None`.
pub fn parse_target(s: &str) -> Option<Target> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !parts.iter().all(|p| ok(p)) {
        return None;
    }
    match parts.as_slice() {
        [db, rel] => Some(Target {
            db: db.to_string(),
            relation: format!("\"public\".\"{rel}\""),
        }),
        [db, schema, rel] => Some(Target {
            db: db.to_string(),
            relation: format!("\"{schema}\".\"{rel}\""),
        }),
        _ => None,
    }
}

pub fn validate_prewarm(p: &PrewarmConfig) -> Checked {
    for r in &p.relations {
        if parse_target(r).is_none() {
            return Err(invalid(
                "prewarm.relations",
                format!(
                    "{r:?} is not db.relation or db.schema.relation (letters, digits, _ and -)"
                ),
            ));
        }
    }
    if !p.relations.is_empty() {
        in_range("prewarm.budget_secs", p.budget_secs, 1..=600)?;
    }
    Ok(())
}

/// Pre-warm the replica at `at`; the report line, or `None` when pre-warm is off.
pub(crate) async fn prewarm(ports: &Ports, replica: &str, at: &Endpoint) -> Option<String> {
    let cfg = &ports.ops.prewarm;
    if cfg.relations.is_empty() {
        return None;
    }
    let targets: Vec<Target> = cfg
        .relations
        .iter()
        .filter_map(|r| parse_target(r))
        .collect();
    let budget = Duration::from_secs(cfg.budget_secs);
    let started = std::time::Instant::now();
    let outcome = ports.pg.prewarm(at, &targets, budget).await;
    let secs = started.elapsed().as_secs_f64();
    phase_metric("prewarm", secs);
    Some(match outcome {
        Ok(done) => {
            let line = format!(
                "prewarmed {replica}: {} blocks of {}/{} relation(s) in {secs:.1}s{}",
                done.blocks,
                done.relations,
                targets.len(),
                done.stopped
                    .as_deref()
                    .map(|w| format!(" (stopped: {w})"))
                    .unwrap_or_default()
            );
            tracing::info!(replica, blocks = done.blocks, secs, "prewarmed");
            line
        }
        Err(e) => {
            tracing::warn!(replica, error = %e, "pre-warm failed; registering it cold");
            format!("prewarm of {replica} failed ({e}); registered cold")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_database_and_a_relation() {
        assert_eq!(
            parse_target("catalog.item_00001"),
            Some(Target {
                db: "catalog".into(),
                relation: "\"public\".\"item_00001\"".into()
            })
        );
        assert_eq!(
            parse_target("db.s.t").unwrap().relation,
            "\"s\".\"t\"".to_string()
        );
        for bad in ["t", "a.b.c.d", "db.t;drop", "db.\"x\"", "db..t"] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let bad = PrewarmConfig {
            relations: vec!["no-db".into()],
            budget_secs: 10,
        };
        let e = validate_prewarm(&bad)
            .unwrap_err()
            .within("ops")
            .to_string();
        assert!(e.contains("ops.prewarm.relations"), "{e}");
        let zero = PrewarmConfig {
            relations: vec!["db.t".into()],
            budget_secs: 0,
        };
        let e = validate_prewarm(&zero)
            .unwrap_err()
            .within("ops")
            .to_string();
        assert!(e.contains("ops.prewarm.budget_secs"), "{e}");
        assert!(validate_prewarm(&PrewarmConfig::default()).is_ok());
    }
}
