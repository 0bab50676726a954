//! The labels pgsurge puts on the cloud resources it creates, and the checks that read
//! them back before anything is deleted.

use super::{LabelMismatch, Ports};
use crate::cloud::Metadata;
use crate::model::rfc3339;
use crate::model::{META_CLUSTER, META_CREATED, META_OP, META_REPLICA, META_ROLE};
use time::OffsetDateTime;

/// The labels of a new surge replica's volume and server: whose, which replica, which
/// operation, and when (the orphan grace period runs from there).
pub(crate) fn surge_labels(
    ports: &Ports,
    replica: &str,
    op: &str,
    now: OffsetDateTime,
) -> Metadata {
    let mut m = Metadata::new();
    m.insert(META_CLUSTER.into(), ports.cluster.clone());
    m.insert(META_ROLE.into(), "surge".into());
    m.insert(META_REPLICA.into(), replica.into());
    m.insert(META_OP.into(), op.into());
    m.insert(META_CREATED.into(), rfc3339(now));
    m
}

/// The labels of a snapshot taken for operation `op` (scale-up's, or one taken ahead).
pub(crate) fn snapshot_labels(ports: &Ports, op: &str, created: OffsetDateTime) -> Metadata {
    let mut m = Metadata::new();
    m.insert(META_CLUSTER.into(), ports.cluster.clone());
    m.insert(META_OP.into(), op.into());
    m.insert(META_CREATED.into(), rfc3339(created));
    m
}

/// The filter for everything labelled with this cluster.
pub(crate) fn ours(ports: &Ports) -> Metadata {
    [(META_CLUSTER.to_string(), ports.cluster.clone())].into()
}

/// The first of the two proofs before anything is deleted: the cloud's own labels say the
/// resource is surge replica `replica` of `cluster`. The state is our memory, not the
/// truth; a bad edit, a bug or a name that happens to match must not delete a base
/// replica, a primary or someone else's resource. `Err` names the label that differs.
pub(crate) fn labelled_surge(
    meta: &Metadata,
    cluster: &str,
    replica: &str,
) -> Result<(), LabelMismatch> {
    for (key, want) in [
        (META_CLUSTER, cluster),
        (META_ROLE, "surge"),
        (META_REPLICA, replica),
    ] {
        match meta.get(key) {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(LabelMismatch::Differs {
                    key,
                    found: v.clone(),
                    want: want.into(),
                })
            }
            None => {
                return Err(LabelMismatch::Missing {
                    key,
                    want: want.into(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::labelled_surge;
    use crate::cloud::{Metadata, META_CLUSTER, META_REPLICA, META_ROLE};

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_all_three_labels_prove_a_surge_replica() {
        let ok = meta(&[
            (META_CLUSTER, "c"),
            (META_ROLE, "surge"),
            (META_REPLICA, "r1"),
        ]);
        assert_eq!(labelled_surge(&ok, "c", "r1"), Ok(()));
        assert_eq!(
            labelled_surge(&ok, "d", "r1").unwrap_err().to_string(),
            r#"labelled pgsurge_cluster="c", not "d""#
        );
        assert_eq!(
            labelled_surge(&ok, "c", "r2").unwrap_err().to_string(),
            r#"labelled pgsurge_replica="r1", not "r2""#
        );
        let base = meta(&[
            (META_CLUSTER, "c"),
            (META_ROLE, "base"),
            (META_REPLICA, "r1"),
        ]);
        assert_eq!(
            labelled_surge(&base, "c", "r1").unwrap_err().to_string(),
            r#"labelled pgsurge_role="base", not "surge""#
        );
        let bare = meta(&[(META_CLUSTER, "c")]);
        assert_eq!(
            labelled_surge(&bare, "c", "r1").unwrap_err().to_string(),
            r#"has no pgsurge_role label (expected "surge")"#
        );
    }
}
