//! The PostgreSQL test fixture itself: a primary and a streaming replica that replicates.

use pgsurge_tests::pg::{Pg, Scratch};

#[test]
fn primary_and_streaming_replica_replicate_rows() {
    let root = Scratch::new("fixture");
    let primary = Pg::primary(&root.0, "primary");
    let replica = Pg::replica_of(&primary, &root.0, "replica");
    assert_eq!(replica.psql("postgres", "select pg_is_in_recovery()"), "t");
    primary.psql(
        "postgres",
        "create table t as select generate_series(1, 1000) as i",
    );
    let lsn = primary.psql("postgres", "select pg_current_wal_lsn()");
    for _ in 0..100 {
        let caught_up = replica.psql(
            "postgres",
            &format!("select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
        );
        if caught_up == "t" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(replica.psql("postgres", "select count(*) from t"), "1000");
}
