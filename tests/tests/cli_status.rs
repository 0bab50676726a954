//! `pgsurge status`: the real binary against a real local cluster (primary, seed
//! replica, two real HAProxy nodes, local state; fixture `pgsurge_tests::cluster::E2e`).
//!
//! - After a scale-up: seed + 2 replicas, state, cloud and both nodes agree (exit 0).
//! - One surge server removed from haproxy2 by hand, the other surge server deleted in
//!   the cloud behind pgsurge's back: exit 3 and exactly those two disagreements.
//! - reconcile repairs both: agree again, seed + 1.
//! - A bad configuration, a corrupt state: exit 1 with a message naming the culprit.

use pgsurge::cloud::Cloud;

use pgsurge::model::resource_name;
use pgsurge_tests::cluster::{E2e, CLUSTER};
use serde_json::{json, Value};
use std::path::Path;

/// `pgsurge --config CFG status [--json]`: (exit code, stdout, stderr).
fn status(cfg: &Path, json: bool) -> (i32, String, String) {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "status"];
    if json {
        args.push("--json");
    }
    let out = pgsurge_tests::command("pgsurge", &args, &[])
        .output()
        .expect("run pgsurge status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON report (exit code checked by the caller).
fn report(cfg: &Path) -> (i32, Value) {
    let (code, stdout, stderr) = status(cfg, true);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json printed non-JSON ({e}): {stdout}{stderr}"));
    (code, v)
}

fn replica_ids(r: &Value) -> Vec<String> {
    r["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// (subject, kind, message) of every disagreement.
fn disagreements(r: &Value) -> Vec<(String, String, String)> {
    r["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap().to_string();
            (s("subject"), s("kind"), s("message"))
        })
        .collect()
}

#[test]
fn status_sees_agreement_then_each_disagreement_then_repair() {
    let env = E2e::start("status", 22000, "");
    env.invoke(
        "scale-up",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "st-1", "name": "load", "state": "firing",
                "params": {"cluster": CLUSTER}}),
    );
    env.tick_until_serving(2);

    // 1. Everything agrees.
    let (code, r) = report(env.cfg());
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(replica_ids(&r).len(), 3, "{r:#}");
    assert!(replica_ids(&r).contains(&"seed".to_string()));
    assert_eq!(disagreements(&r), vec![], "{r:#}");
    assert_eq!(r["nodes"], json!(["haproxy1", "haproxy2"]));
    for row in r["replicas"].as_array().unwrap() {
        for node in ["haproxy1", "haproxy2"] {
            assert_eq!(row["haproxy"][node]["is"], "present", "{row:#}");
            assert_eq!(row["haproxy"][node]["admin"], "ready", "{row:#}");
        }
        assert_eq!(row["server"]["status"], "ready", "{row:#}");
        assert_eq!(row["volume"]["status"], "ready", "{row:#}");
    }
    let (code, text, stderr) = status(env.cfg(), false);
    eprintln!("--- status, agreeing ---\n{text}");
    assert_eq!(code, 0, "{text}{stderr}");
    assert!(
        text.contains("haproxy1") && text.contains("haproxy2"),
        "{text}"
    );
    assert!(
        text.contains("State, cloud and all 2 HAProxy nodes agree."),
        "{text}"
    );
    // The scale-up stays recorded while its replicas live; status must not call it working.
    let op_line = text
        .lines()
        .find(|l| l.contains("scale-up") && l.contains("alarm st-1"))
        .unwrap_or_else(|| panic!("no operation line: {text}"));
    assert!(
        op_line.ends_with(": done, all serving (kept while its replicas live)"),
        "{op_line}"
    );

    // 2. Disagreements made for real: one surge server out of haproxy2 by hand, the other
    //    surge server deleted in the cloud behind pgsurge's back.
    let surge = env.surge_replicas();
    let (unlisted, deleted) = (surge[0].clone(), surge[1].clone());
    let name = resource_name(CLUSTER, &unlisted.id);
    env.h2
        .cli(&format!("set server pg_read/{name} state maint"));
    let answer = env.h2.cli(&format!("del server pg_read/{name}"));
    assert!(answer.contains("Server deleted"), "{answer}");
    env.rt
        .block_on(
            env.cloud
                .delete_server(deleted.server_id.as_deref().unwrap()),
        )
        .unwrap();

    let (code, r) = report(env.cfg());
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(
        disagreements(&r),
        vec![
            (
                unlisted.id.clone(),
                "absent-from-node".into(),
                "serving in state but absent from haproxy2".into()
            ),
            (
                deleted.id.clone(),
                "server-missing".into(),
                "serving in state but server missing in cloud".into()
            ),
        ],
        "{r:#}"
    );
    let (code, text, _) = status(env.cfg(), false);
    eprintln!("--- status, disagreeing ---\n{text}");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("Disagreements:"), "{text}");
    assert!(
        text.contains(&format!(
            "{}: serving in state but absent from haproxy2",
            unlisted.id
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: serving in state but server missing in cloud",
            deleted.id
        )),
        "{text}"
    );

    // 3. reconcile repairs both; status agrees again with the seed and one replica.
    env.invoke("reconcile", &json!({"pgsurge": 1, "kind": "tick"}));
    let (code, r) = report(env.cfg());
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(replica_ids(&r), ["seed".to_string(), unlisted.id.clone()]);

    // Clean up through pgsurge: back to the seed alone, still agreeing.
    let down = env.invoke(
        "scale-down",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "st-2", "name": "low", "state": "firing",
                "params": {"cluster": CLUSTER}}),
    );
    let (code, r) = report(env.cfg());
    assert_eq!(
        (code, replica_ids(&r)),
        (0, vec!["seed".to_string()]),
        "{down:#}\n{r:#}"
    );
    env.delete_seed();
}

#[test]
fn a_bad_config_or_a_corrupt_state_is_exit_1_with_a_precise_message() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-status-bad")
        .tempdir()
        .unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[ops]\nlease_secs = 1\n").unwrap();
    let (code, stdout, stderr) = status(&cfg, false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("`ops.lease_secs`"), "{stderr}");

    // No cloud configured: nothing to compare with.
    std::fs::write(&cfg, "[cluster]\nname = \"x\"\n").unwrap();
    let (code, _, stderr) = status(&cfg, true);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`cloud.provider` is \"none\""), "{stderr}");

    // A state document that is not valid JSON.
    let root = dir.path();
    std::fs::create_dir_all(root.join("state/x")).unwrap();
    std::fs::write(root.join("state/x/state.json"), "{ not json").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nname = \"x\"\n[cloud]\nprovider = \"local\"\n[local]\npool_dir = \"{}\"\n\
             bootstrap_script = \"{}\"\n[state]\nbackend = \"local\"\nlocal_dir = \"{}\"\n",
            root.join("pool").display(),
            pgsurge_tests::workspace_root()
                .join("infra/image/bootstrap-replica.sh")
                .display(),
            root.join("state").display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = status(&cfg, false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("state document `x/state.json` is not valid"),
        "{stderr}"
    );
}

/// Issue 19. Scale-down is killed inside the local provider's server delete, after the
/// postmaster stopped and before the server record went: the replica stays `deleting`
/// and its standby proof can never be given again. Scale-down recorded the proofs before
/// the stop, so reconcile finishes it without a live PostgreSQL. A replica never proven
/// (marked `deleting` by a build that did not record proofs) still refuses, on every run,
/// and `status` names it as stuck (exit 3) instead of saying all agree.
#[test]
fn a_deleting_replica_whose_postgres_was_stopped_is_finished_or_reported_stuck() {
    let mut env = E2e::start("status-stuck", 23400, "");
    env.env.push(("PGSURGE_OPS__LEASE_SECS".into(), "2".into()));
    let alarm = |id: &str| {
        json!({"pgsurge": 1, "kind": "alarm", "id": id, "name": "x", "state": "firing",
                          "params": {"cluster": CLUSTER}})
    };
    env.invoke("scale-up", &alarm("stuck-up"));
    env.tick_until_serving(2);

    env.invoke_killed_at(
        "scale-down",
        &alarm("stuck-down"),
        "local.delete_server.after_stop",
    );
    std::thread::sleep(std::time::Duration::from_millis(2300)); // the dead run's lease
    let victim = env
        .state()
        .replicas
        .into_iter()
        .find(|r| r.phase == pgsurge::model::Phase::Deleting)
        .expect("the replica being deleted when the kill came");
    let server_id = victim.server_id.clone().unwrap();
    let server = env.rt.block_on(env.cloud.get_server(&server_id)).unwrap();
    assert_eq!(
        server.status,
        pgsurge::cloud::Status::Error,
        "its record stays, its PostgreSQL is stopped"
    );
    let proof = victim
        .delete_proof()
        .expect("proofs recorded before the stop");
    assert_eq!(proof.server_id, server_id);

    // 1. Never proven: every run refuses, as before; status says so, exit 3.
    let forget_proof = |s: &mut pgsurge::model::ClusterState| {
        let r = s.replicas.iter_mut().find(|r| r.id == victim.id).unwrap();
        r.set_delete_proof(None);
    };
    env.edit_state(forget_proof);
    for run in 1..=3 {
        let answer = env.invoke("reconcile", &json!({"pgsurge": 1, "kind": "tick"}));
        assert!(
            answer
                .to_string()
                .contains("cannot prove it is a standby, not deleting"),
            "run {run}: {answer}"
        );
    }
    let (code, r) = report(env.cfg());
    assert_eq!(code, 3, "{r:#}");
    let stuck: Vec<_> = disagreements(&r)
        .into_iter()
        .filter(|(_, kind, _)| kind == "stuck")
        .collect();
    assert_eq!(stuck.len(), 1, "{r:#}");
    assert_eq!(stuck[0].0, victim.id);
    assert!(
        stuck[0].2.starts_with(
            "deleting in state, and reconcile cannot move it: refused 3 times in a row since "
        ) && stuck[0].2.contains("cannot prove it is a standby"),
        "{}",
        stuck[0].2
    );
    let (code, text, _) = status(env.cfg(), false);
    eprintln!("--- status, stuck ---\n{text}");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("reconcile cannot move it"), "{text}");

    // 2. Proven before the stop (what scale-down recorded): reconcile finishes it.
    env.edit_state(|s| {
        let r = s.replicas.iter_mut().find(|r| r.id == victim.id).unwrap();
        r.set_delete_proof(Some(&proof));
    });
    let answer = env.invoke("reconcile", &json!({"pgsurge": 1, "kind": "tick"}));
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(0), "{answer}\n{seen:?}");
    let (code, r) = report(env.cfg());
    assert_eq!(
        (code, replica_ids(&r)),
        (0, vec!["seed".to_string()]),
        "{r:#}"
    );
    env.delete_seed();
}
