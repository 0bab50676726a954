//! Noticing an HAProxy reload or restart from `show info` (pure).
//!
//! Dynamic servers live in the process: a reload (`-sf`, a new process) or a restart
//! forgets them. The new process has a new `Pid`, and its `Uptime_sec` starts again
//! from 0; either is enough, both are read because a PID can be reused.

use serde::Serialize;

/// Which HAProxy process answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub uptime_secs: u64,
}

/// `show info` → the process, or `None` when the answer lacks `Pid` / `Uptime_sec`.
pub fn parse_show_info(text: &str) -> Option<Process> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    Some(Process {
        pid: field("Pid")?.parse().ok()?,
        uptime_secs: field("Uptime_sec")?.parse().ok()?,
    })
}

/// A different process than last time: a new PID, or the uptime went backwards (a
/// restart that got the same PID back). The first look (`None`) is not a reload.
pub fn reloaded(before: Option<&Process>, now: &Process) -> bool {
    match before {
        None => false,
        Some(b) => b.pid != now.pid || now.uptime_secs < b.uptime_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_info_is_parsed() {
        let text = "Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime: 0d 0h00m07s\nUptime_sec: 7\nMemmax_MB: 0\n";
        assert_eq!(
            parse_show_info(text),
            Some(Process {
                pid: 4242,
                uptime_secs: 7
            })
        );
        assert_eq!(parse_show_info("Unknown command.\n"), None);
        assert_eq!(parse_show_info("Pid: x\nUptime_sec: 1\n"), None);
    }

    #[test]
    fn a_new_pid_or_a_younger_process_is_a_reload() {
        let p = |pid, uptime_secs| Process { pid, uptime_secs };
        assert!(!reloaded(None, &p(1, 0)));
        assert!(!reloaded(Some(&p(1, 5)), &p(1, 7)));
        assert!(reloaded(Some(&p(1, 5)), &p(2, 9)));
        assert!(reloaded(Some(&p(1, 50)), &p(1, 0)));
    }
}
