//! The random-kill soak: the five real functions served over HTTP (`<fn> serve --port`),
//! a read load through both HAProxy nodes and a write load on the primary, and in every
//! round one function `kill -9`ed at a random moment while it works — as an OOM killer
//! or a FunctionGraph timeout would — then restarted, the same delivery sent again (the
//! sender's retry) and ticks until everything agrees, within a bound.
//!
//! Rounds go round the five functions, one cycle per scale-up and scale-down:
//! scale-up (alarm) → instance-ready (tick, the new replicas ready to register) →
//! reconcile (an HAProxy node reloaded, an orphan volume, an old snapshot to rotate) →
//! instance-deleted (a server deleted behind pgsurge's back) → scale-down (alarm).
//! Each round counts leaked servers, volumes and snapshots, duplicates, whether it
//! converged within its bound; failed reads are counted over the whole run. A round that
//! does not converge is counted, then cleared by hand so the next ones still measure.
//!
//! Knobs: `SOAK_ROUNDS` (default 10: two per function, the short run in `./just test`;
//! `./just soak` runs 50), `SOAK_SEED` (printed at the start: set it to replay a run),
//! `SOAK_BOUND_SECS` (per round, default 90). A summary table is printed at the end,
//! then the test fails on any leak, duplicate, non-converged round or failed read.

use pgsurge::cloud::{Cloud, Filter, Metadata, META_CLUSTER, META_REPLICA, META_ROLE};

use pgsurge::model::resource_name;
use pgsurge::model::{Phase, Role};
use pgsurge_tests::cluster::{replica_port, E2e, CLUSTER};
use pgsurge_tests::{command, free_port, wait_http_ok, Proc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 5] = [
    "scale-up",
    "instance-ready",
    "reconcile",
    "instance-deleted",
    "scale-down",
];
const LEASE_SECS: u64 = 2;
const TOKEN: &str = "soak-token-0123456789abcdef0123456789";

/// splitmix64: a seeded, replayable sequence without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, max).
    fn below(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// The five functions as HTTP endpoints, each restartable on its own port.
struct Fleet {
    procs: BTreeMap<&'static str, Proc>,
    ports: BTreeMap<&'static str, u16>,
    env: Vec<(String, String)>,
    cfg: String,
    logs: std::path::PathBuf,
    http: reqwest::Client,
}

impl Fleet {
    fn start(env: &E2e) -> Fleet {
        let mut vars = env.env.clone();
        vars.push(("PGSURGE_AUTH__TOKEN".into(), TOKEN.into()));
        // scale-up snapshots, clones and boots before it answers.
        vars.push(("PGSURGE_RUNTIME__TIMEOUT_SECS".into(), "300".into()));
        let mut fleet = Fleet {
            procs: BTreeMap::new(),
            ports: FUNCTIONS.iter().map(|f| (*f, free_port())).collect(),
            env: vars,
            cfg: env.cfg().to_str().unwrap().to_string(),
            logs: env.root.0.clone(),
            http: reqwest::Client::new(),
        };
        for f in FUNCTIONS {
            fleet.launch(&env.rt, f);
        }
        fleet
    }

    fn launch(&mut self, rt: &tokio::runtime::Runtime, function: &'static str) {
        let port = self.ports[function].to_string();
        let env: Vec<(&str, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        // Its log appended across restarts (a pipe nobody reads would fill and block it).
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{function}.log")))
            .unwrap();
        let mut cmd = command(
            function,
            &["--config", &self.cfg, "serve", "--port", &port],
            &env,
        );
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        self.procs.insert(function, Proc::spawn_cmd(&mut cmd));
        rt.block_on(wait_http_ok(
            &format!("http://127.0.0.1:{port}/healthz"),
            30,
        ));
    }

    /// `kill -9`, then a new process on the same port.
    fn kill_and_restart(&mut self, rt: &tokio::runtime::Runtime, function: &'static str) {
        // Dropping a Proc is SIGKILL and a wait: nothing of the process runs on.
        drop(self.procs.remove(function));
        self.launch(rt, function);
    }

    fn url(&self, function: &str) -> String {
        format!("http://127.0.0.1:{}/", self.ports[function])
    }

    /// POST a webhook; the answer's status and body (an error if the process died).
    fn post(
        &self,
        function: &str,
        body: &Value,
    ) -> impl std::future::Future<Output = Result<(u16, Value), String>> + Send + 'static {
        let req = self
            .http
            .post(self.url(function))
            .header("x-pgsurge-token", TOKEN)
            .json(body);
        async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            Ok((status, r.json().await.unwrap_or(Value::Null)))
        }
    }
}

/// pgbench runs through both HAProxy nodes, one after the other until stopped.
#[derive(Default, Debug, Clone)]
struct Reads {
    runs: u64,
    ok: u64,
    failed: u64,
    aborted: u64,
    last_failure: Option<String>,
}

fn read_load(ports: [u16; 2], stop: Arc<AtomicBool>, reads: Arc<Mutex<Reads>>) {
    while !stop.load(Ordering::SeqCst) {
        // Rate-limited, a new connection per transaction: every read meets HAProxy's
        // current set of servers. pgbench prints its totals only when -T runs out.
        let runs: Vec<_> = ports
            .iter()
            .map(|p| {
                Command::new("pgbench")
                    .args(["-S", "-C", "-n", "-c", "2", "-R", "10", "-T", "5"])
                    .args(["-h", "127.0.0.1", "-p", &p.to_string()])
                    .args(["-U", "postgres", "postgres"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("pgbench")
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let mut r = reads.lock().unwrap();
            r.runs += 1;
            let number = |label: &str| -> Option<u64> {
                let at = text.find(label)? + label.len();
                text[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())?
                    .parse()
                    .ok()
            };
            let aborted = text.matches("aborted").count() as u64;
            match (
                number("number of transactions actually processed: "),
                number("number of failed transactions: "),
            ) {
                (Some(ok), Some(failed)) => {
                    r.ok += ok;
                    r.failed += failed;
                    r.aborted += aborted;
                    if failed > 0 || aborted > 0 {
                        r.last_failure = Some(text);
                    }
                }
                // No totals: the run itself failed; count it as a failure.
                _ => {
                    r.aborted += aborted.max(1);
                    r.last_failure = Some(text);
                }
            }
        }
    }
}

/// What one round found.
#[derive(Default, Debug, Clone)]
struct Tally {
    rounds: u64,
    /// Kills that landed while the function was still working on the request.
    working: u64,
    /// Kills that landed after it had answered (the retry then finds nothing to do).
    late: u64,
    converged: u64,
    leaked_servers: u64,
    leaked_volumes: u64,
    leaked_snapshots: u64,
    duplicates: u64,
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.rounds += o.rounds;
        self.working += o.working;
        self.late += o.late;
        self.converged += o.converged;
        self.leaked_servers += o.leaked_servers;
        self.leaked_volumes += o.leaked_volumes;
        self.leaked_snapshots += o.leaked_snapshots;
        self.duplicates += o.duplicates;
        self.slowest = self.slowest.max(o.slowest);
    }
}

fn alarm(id: &str) -> Value {
    json!({"pgsurge": 1, "kind": "alarm", "id": id, "name": "load", "state": "firing",
           "params": {"cluster": CLUSTER}})
}

fn tick() -> Value {
    json!({"pgsurge": 1, "kind": "tick"})
}

struct Soak {
    env: E2e,
    fleet: Fleet,
    rng: Rng,
    /// Per function: how long a whole invocation took when it was not killed (the
    /// kill delay is drawn below it, so most kills land while it works).
    estimate: BTreeMap<&'static str, Duration>,
    bound: Duration,
    log: String,
    /// When this round's kill happened: convergence time counts from there.
    killed_at: Instant,
}

impl Soak {
    fn serving(&self) -> usize {
        self.env
            .surge_replicas()
            .iter()
            .filter(|r| r.phase == Phase::Serving)
            .count()
    }

    /// Send `body` to `function`, `kill -9` it after a random delay, restart it; returns
    /// whether the kill landed while it was still working.
    fn kill_during(&mut self, function: &'static str, body: &Value) -> bool {
        let delay = self.rng.below(self.estimate[function]);
        let started = Instant::now();
        let post = self.fleet.post(function, body);
        // When the answer came, not when we looked: the restart takes its own time.
        let call = self
            .env
            .rt
            .spawn(async move { (post.await, Instant::now()) });
        std::thread::sleep(delay);
        let working = !call.is_finished();
        self.killed_at = Instant::now();
        self.fleet.kill_and_restart(&self.env.rt, function);
        let (answer, answered_at) = self.env.rt.block_on(call).unwrap();
        if !working {
            // It answered before the kill: that is how long a whole invocation takes.
            let took = answered_at - started;
            self.estimate.insert(function, took.mul_f32(1.1));
            let _ = writeln!(
                self.log,
                "  {function}: answered {:?} after {took:.2?}, before the kill at {delay:.2?}",
                answer.map(|a| a.0)
            );
        } else {
            let phases: Vec<String> = self
                .env
                .surge_replicas()
                .iter()
                .map(|r| format!("{} {:?}", r.id, r.phase))
                .collect();
            let _ = writeln!(
                self.log,
                "  {function}: killed at {delay:.2?}, working (state then: {phases:?})"
            );
        }
        // The dead holder's work lease must lapse before anyone resumes its work.
        std::thread::sleep(Duration::from_millis(LEASE_SECS * 1000 + 300));
        working
    }

    /// POST and wait for the answer (a delivery, a retry or a tick).
    fn call(&self, function: &str, body: &Value) -> Result<(u16, Value), String> {
        self.env.rt.block_on(self.fleet.post(function, body))
    }

    /// Ticks (instance-ready, reconcile) until `done` holds or the bound (counted from
    /// the kill) passes.
    fn converge(&mut self, done: impl FnMut(&Soak) -> bool, tally: &mut Tally) -> bool {
        let ticks = [("instance-ready", tick()), ("reconcile", tick())];
        self.converge_by(done, &ticks, tally)
    }

    /// Until `done` holds or the bound passes, send `nudges` (ticks, or a delivery
    /// again as a sender retries until it gets a 2xx).
    fn converge_by(
        &mut self,
        mut done: impl FnMut(&Soak) -> bool,
        nudges: &[(&str, Value)],
        tally: &mut Tally,
    ) -> bool {
        loop {
            if done(self) {
                tally.converged += 1;
                tally.slowest = tally.slowest.max(self.killed_at.elapsed());
                return true;
            }
            if self.killed_at.elapsed() > self.bound {
                // What is stuck, in the functions' own words.
                let answer = self.call("reconcile", &tick());
                let phases: Vec<String> = self
                    .env
                    .surge_replicas()
                    .iter()
                    .map(|r| format!("{} {:?}", r.id, r.phase))
                    .collect();
                let _ = writeln!(
                    self.log,
                    "  stuck: replicas {phases:?}; operations {:?}; reconcile says {answer:?}",
                    self.env.state().operations
                );
                return false;
            }
            for (f, body) in nudges {
                if let Err(e) = self.call(f, body) {
                    eprintln!("{f}: {e}");
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Leaks and duplicates, once the round is over: what exists beyond the `want`
    /// surge replicas, and snapshots the state does not know.
    fn count(&mut self, want: usize, tally: &mut Tally, first_op: Option<&str>) {
        let seen = self.env.surge_everywhere();
        let dups = |names: &[String]| {
            let mut n = names.to_vec();
            n.dedup();
            (names.len() - n.len()) as u64
        };
        let state = self.env.surge_replicas();
        // A retried delivery that decided a second operation: its replicas.
        let second_op = first_op.map_or(0, |op| {
            state
                .iter()
                .filter(|r| r.op_id.as_deref() != Some(op))
                .count() as u64
        });
        tally.duplicates += dups(&seen.servers) + dups(&seen.volumes) + second_op;
        tally.leaked_servers += seen.servers.len().saturating_sub(want) as u64;
        tally.leaked_volumes += seen.volumes.len().saturating_sub(want) as u64;
        tally.leaked_snapshots += seen.leaked_snapshots().len() as u64;
        let _ = writeln!(self.log, "  after: {seen:?}");
    }

    /// After a round that did not converge: remove every surge resource and its state by
    /// hand, so the next round starts from the seed alone (its leaks are already counted).
    fn clear(&mut self) {
        let ours = Filter {
            name: None,
            metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
        };
        let surge = Filter {
            name: None,
            metadata: [(META_ROLE.to_string(), "surge".to_string())].into(),
        };
        let known: Vec<String> = self
            .env
            .state()
            .snapshots
            .into_iter()
            .map(|s| s.id)
            .collect();
        let cloud = &self.env.cloud;
        self.env.rt.block_on(async {
            for s in cloud.list_servers(&surge).await.unwrap() {
                cloud.delete_server(&s.id).await.unwrap();
            }
            for v in cloud.list_volumes(&surge).await.unwrap() {
                cloud.delete_volume(&v.id).await.unwrap();
            }
            for s in cloud.list_snapshots(&ours).await.unwrap() {
                if !known.contains(&s.id) {
                    cloud.delete_snapshot(&s.id).await.unwrap();
                }
            }
        });
        self.env.edit_state(|s| {
            s.replicas.retain(|r| r.role != Role::Surge);
            s.operations.clear();
            s.leases.clear();
        });
        // HAProxy to the desired set (the seed alone).
        let _ = self.call("reconcile", &tick());
        let seen = self.env.surge_everywhere();
        assert!(seen.agree_on(0), "cannot clear the cluster: {seen:?}");
    }

    /// One round of `function`; returns whether it converged.
    fn round(&mut self, function: &'static str, n: u64, tally: &mut Tally) -> bool {
        tally.rounds += 1;
        let (want, first_op, converged) = match function {
            "scale-up" => {
                let a = alarm(&format!("soak-up-{n}"));
                let working = self.kill_during(function, &a);
                self.tally_kill(working, tally);
                let retry = self.call(function, &a);
                let _ = writeln!(self.log, "  retry: {:?}", retry.map(|r| r.0));
                let op = self
                    .env
                    .surge_replicas()
                    .first()
                    .and_then(|r| r.op_id.clone());
                // Created and booted: every replica has its server and volume, none is
                // `creating`, each PostgreSQL accepts connections. No tick here (they
                // would register the replicas: the next round's work); the sender's
                // retries instead, as Alertmanager repeats a firing alert.
                let ok = self.converge_by(
                    |s| {
                        let r = s.env.surge_replicas();
                        let seen = s.env.surge_everywhere();
                        r.len() == 2
                            && r.iter().all(|r| {
                                r.phase != Phase::Creating
                                    && r.address.is_some()
                                    && accepting(replica_port(r))
                            })
                            && seen.servers.len() == 2
                            && seen.servers == seen.volumes
                            && seen.leaked_snapshots().is_empty()
                    },
                    &[(function, a.clone())],
                    tally,
                );
                (2, op, ok)
            }
            "instance-ready" => {
                // Work to interrupt: the replicas answer (the scale-up round waited for
                // that), so the tick registers them.
                let working = self.kill_during(function, &tick());
                self.tally_kill(working, tally);
                let ok = self.converge(|s| s.serving() == 2 && s.agrees(2), tally);
                (2, None, ok)
            }
            "reconcile" => {
                // Work to interrupt: a node that lost its dynamic servers, an orphan.
                self.env.h2.reload();
                let stray = format!("stray-{n}");
                let meta: Metadata = [
                    (META_CLUSTER.to_string(), CLUSTER.to_string()),
                    (META_ROLE.to_string(), "surge".to_string()),
                    (META_REPLICA.to_string(), stray.clone()),
                    (
                        pgsurge::ops::META_CREATED.to_string(),
                        "2026-01-01T00:00:00Z".to_string(),
                    ),
                ]
                .into();
                self.env
                    .rt
                    .block_on(
                        self.env
                            .cloud
                            .create_empty_volume(&resource_name(CLUSTER, &stray), &meta),
                    )
                    .unwrap();
                let working = self.kill_during(function, &tick());
                self.tally_kill(working, tally);
                let ok = self.converge(|s| s.serving() == 2 && s.agrees(2), tally);
                (2, None, ok)
            }
            "instance-deleted" => {
                let victim = self.env.surge_replicas().remove(0);
                let server = victim.server_id.clone().unwrap();
                // The way a careful operator retires a machine: out of rotation on
                // both nodes first, so the read count measures pgsurge, not sessions cut
                // by a machine vanishing under them.
                let name = resource_name(CLUSTER, &victim.id);
                for h in [&self.env.h1, &self.env.h2] {
                    h.cli(&format!("set server pg_read/{name} state maint"));
                }
                std::thread::sleep(Duration::from_secs(1));
                self.env
                    .rt
                    .block_on(self.env.cloud.delete_server(&server))
                    .unwrap();
                let ev = json!({"pgsurge": 1, "kind": "instance", "event": "deleted", "server_id": server});
                let working = self.kill_during(function, &ev);
                self.tally_kill(working, tally);
                let retry = self.call(function, &ev);
                let _ = writeln!(self.log, "  retry: {:?}", retry.map(|r| r.0));
                let ok = self.converge(|s| s.agrees(1), tally);
                (1, None, ok)
            }
            "scale-down" => {
                let a = alarm(&format!("soak-down-{n}"));
                let working = self.kill_during(function, &a);
                self.tally_kill(working, tally);
                let retry = self.call(function, &a);
                let _ = writeln!(self.log, "  retry: {:?}", retry.map(|r| r.0));
                let ok = self.converge(
                    |s| s.agrees(0) && s.env.state().operations.is_empty(),
                    tally,
                );
                (0, None, ok)
            }
            other => unreachable!("{other}"),
        };
        self.count(want, tally, first_op.as_deref());
        converged
    }

    fn agrees(&self, n: usize) -> bool {
        self.env.surge_everywhere().agree_on(n)
    }

    fn tally_kill(&self, working: bool, tally: &mut Tally) {
        if working {
            tally.working += 1;
        } else {
            tally.late += 1;
        }
    }
}

/// Whether PostgreSQL on `port` accepts connections.
fn accepting(port: u16) -> bool {
    Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn soak_short() {
    let rounds = env_num("SOAK_ROUNDS", 10);
    let seed = env_num(
        "SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let bound = Duration::from_secs(env_num("SOAK_BOUND_SECS", 90));
    eprintln!(
        "soak: SOAK_SEED={seed} SOAK_ROUNDS={rounds} SOAK_BOUND_SECS={}",
        bound.as_secs()
    );
    let wall = Instant::now();

    let mut env = E2e::start("soak", 21700, "");
    env.env.extend(
        [
            ("PGSURGE_OPS__LEASE_SECS", LEASE_SECS.to_string()),
            // A new snapshot every scale-up, only the newest kept: rotation has work.
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "1".into()),
            ("PGSURGE_OPS__SNAPSHOT_KEEP", "1".into()),
            ("PGSURGE_OPS__ORPHAN_GRACE_SECS", "0".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    // Writes on the primary, so every replica has WAL to catch up on.
    let _writes = Proc::spawn_cmd(
        Command::new("pgbench")
            .args(["-n", "-c", "2", "-R", "10", "-T", "36000"])
            .args(["-h", "127.0.0.1", "-p", &env.primary.port.to_string()])
            .args(["-U", "postgres", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Reads::default()));
    let loader = {
        let (stop, reads, ports) = (stop.clone(), reads.clone(), [env.h1.port, env.h2.port]);
        std::thread::spawn(move || read_load(ports, stop, reads))
    };

    let fleet = Fleet::start(&env);
    let mut soak = Soak {
        env,
        fleet,
        rng: Rng(seed),
        // First guesses; each is replaced by what a whole invocation took.
        estimate: [
            ("scale-up", 8.0),
            ("instance-ready", 1.0),
            ("reconcile", 2.0),
            ("instance-deleted", 1.0),
            ("scale-down", 6.0),
        ]
        .into_iter()
        .map(|(f, s)| (f, Duration::from_secs_f64(s)))
        .collect(),
        bound,
        log: String::new(),
        killed_at: Instant::now(),
    };
    let mut per: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut next = 0;
    for n in 1..=rounds {
        let function = FUNCTIONS[next % FUNCTIONS.len()];
        let t = Instant::now();
        soak.log.clear();
        let mut tally = Tally::default();
        let converged = soak.round(function, n, &mut tally);
        eprintln!(
            "round {n:>3} {function:<16} {} in {:>5.1?}\n{}",
            if converged {
                "converged"
            } else {
                "NOT CONVERGED"
            },
            t.elapsed(),
            soak.log.trim_end()
        );
        per.entry(function).or_default().add(&tally);
        if converged {
            next += 1;
        } else {
            // Start again from the seed alone: the next round is a scale-up.
            soak.clear();
            next = 0;
        }
    }

    stop.store(true, Ordering::SeqCst);
    loader.join().unwrap();
    let reads = reads.lock().unwrap().clone();
    let mut total = Tally::default();
    let mut table = format!(
        "\nsoak summary (SOAK_SEED={seed}, {rounds} rounds, {:.0?} wall; servers, volumes, \
         snapshots: leaked; converged: within {}s of the kill; slowest: kill to converged)\n\
         {:<17}{:>7}{:>9}{:>6}{:>11}{:>9}{:>9}{:>11}{:>6}{:>10}\n",
        wall.elapsed(),
        bound.as_secs(),
        "function",
        "rounds",
        "working",
        "late",
        "converged",
        "servers",
        "volumes",
        "snapshots",
        "dups",
        "slowest"
    );
    for f in FUNCTIONS {
        let t = per.get(f).cloned().unwrap_or_default();
        total.add(&t);
        table += &row(f, &t);
    }
    table += &row("total", &total);
    let _ = writeln!(
        table,
        "reads through HAProxy: {} ok, {} failed, {} aborted clients ({} pgbench runs)",
        reads.ok, reads.failed, reads.aborted, reads.runs
    );
    eprintln!("{table}");

    assert!(reads.ok > 0, "no read went through: {reads:?}");
    assert_eq!(
        (reads.failed, reads.aborted),
        (0, 0),
        "failed reads; the last failing run:\n{}",
        reads.last_failure.unwrap_or_default()
    );
    assert_eq!(
        (
            total.converged,
            total.leaked_servers,
            total.leaked_volumes,
            total.leaked_snapshots,
            total.duplicates
        ),
        (total.rounds, 0, 0, 0, 0),
        "(converged, leaked servers, volumes, snapshots, duplicates): replay with \
         SOAK_SEED={seed}{table}"
    );
    soak.env.delete_seed();
}

fn row(name: &str, t: &Tally) -> String {
    format!(
        "{:<17}{:>7}{:>9}{:>6}{:>11}{:>9}{:>9}{:>11}{:>6}{:>9.1}s\n",
        name,
        t.rounds,
        t.working,
        t.late,
        t.converged,
        t.leaked_servers,
        t.leaked_volumes,
        t.leaked_snapshots,
        t.duplicates,
        t.slowest.as_secs_f64()
    )
}
