//! Test support: find the built binaries, run them, and play the platform's side of
//! the FunctionGraph and Lambda runtime APIs.
//!
//! Nothing here is a stand-in for a service pgsurge *uses*: the fake runtime API is the
//! host that would run our binaries, implemented from the documented protocol so the
//! real binaries can be driven end to end.

pub mod agent;
pub mod cluster;
pub mod dataplane_api;
pub mod glibc;
pub mod haproxy;
pub mod netns;
pub mod openapi;
pub mod os_image;
pub mod os_vm;
pub mod os_volume;
pub mod pg;
pub mod rgw;
pub mod runtime_api;
pub mod smn;
pub mod terraform;
pub mod tls;
pub mod tools;
pub mod vm;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a binary built by `cargo build --workspace` in the same profile as this test.
///
/// Panics with instructions when it is missing, so a test never passes vacuously.
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test-binary>  ->  target/<profile>/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary {} not found: run `cargo build --workspace --bins` first (the `just test` recipe does)",
        path.display()
    );
    path
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc(Option<Child>);

impl Proc {
    /// Start any command in the background, killed on drop.
    pub fn spawn_cmd(cmd: &mut Command) -> Proc {
        Proc(Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        ))
    }

    /// Own an already spawned child (killed on drop like the others).
    pub fn from_child(child: Child) -> Proc {
        Proc(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Wait for the process to exit by itself.
    pub fn wait(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait")
    }

    /// SIGTERM (a graceful stop), then collect its status and output.
    pub fn stop(self) -> std::process::Output {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status();
        self.wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command for a workspace binary with a clean pgsurge environment plus `env`.
pub fn command(name: &str, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PGSURGE_")
            || k == "AWS_LAMBDA_RUNTIME_API"
            || k == "RUNTIME_API_ADDR"
            || k == "PORT"
        {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Start a workspace binary in the background (see [`command`]).
pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
    Proc(Some(
        command(name, args, env)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}")),
    ))
}

/// Run `<bin> invoke --event FILE` and return (exit code, stdout JSON, stderr).
pub fn invoke_cli(
    name: &str,
    event: &std::path::Path,
    env: &[(&str, String)],
) -> (i32, serde_json::Value, String) {
    let out = command(name, &["invoke", "--event", event.to_str().unwrap()], env)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{name} printed non-JSON ({e}): {stdout}"));
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `GET url` until it answers 200 or `secs` pass.
pub async fn wait_http_ok(url: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} did not come up within {secs}s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A function's HTTP host (`<function> --config CFG serve --port PORT`) on loopback, its
/// output in `log`; returns once `/healthz` answers.
pub fn serve_function(
    function: &str,
    cfg: &std::path::Path,
    port: u16,
    log: &std::path::Path,
) -> Proc {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut cmd = command(
        function,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "serve",
            "--port",
            &port.to_string(),
        ],
        &[],
    );
    cmd.stdout(file.try_clone().unwrap()).stderr(file);
    let proc = Proc::spawn_cmd(&mut cmd);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(wait_http_ok(
            &format!("http://127.0.0.1:{port}/healthz"),
            30,
        ));
    proc
}
