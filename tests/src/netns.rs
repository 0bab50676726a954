//! The OpenStack test cloud's guest network (made by `tests/openstack/up.sh`): Neutron
//! network `pgsurge-vms` is a bridge inside the network namespace [`NETNS`], routed from
//! this host through a veth pair. The qemu guests live only there.
//!
//! What the guests must reach — the primary they stream from, instance-ready's HTTP
//! host they call back — runs on this host's loopback like in every other test, and a
//! [`Relay`] gives it an address inside the namespace ([`GATEWAY`], the address clouds
//! give a subnet's router): one process whose listening socket was made inside the
//! namespace and whose outgoing connections go to loopback here. So no service listens
//! on anything but loopback, and no guest traffic leaves the namespace except through
//! the relay.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The namespace up.sh makes (tests/openstack/common.sh).
pub const NETNS: &str = "pgsurge-os";
/// The guests' gateway address: the namespace's own address on the bridge.
pub const GATEWAY: &str = "198.18.10.1";
/// The guests' subnet (for pg_hba.conf lines).
pub const VM_CIDR: &str = "198.18.10.0/24";
/// Where this host's traffic into the namespace comes from (its end of the veth pair).
pub const HOST_SIDE: &str = "198.18.255.1";

/// A TCP listener made inside namespace `ns`: a short-lived thread enters it (`setns`
/// changes only the calling thread) and binds; the socket stays in that namespace.
pub fn listen_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd; it affects only this thread, which
            // ends right after binding.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            TcpListener::bind(addr)
        })
        .join()
        .expect("setns thread")
    })
}

/// Forwards every TCP connection made to `listen` inside the namespace to `target` on
/// this host's loopback, until dropped.
pub struct Relay {
    pub listen: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(ns: &str, listen: SocketAddr, target: SocketAddr) -> Relay {
        let listener = listen_in(ns, listen)
            .unwrap_or_else(|e| panic!("cannot listen on {listen} inside namespace {ns}: {e} (is the OpenStack test cloud up? tests/openstack/up.sh)"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        inbound.set_nonblocking(false).ok();
                        if let Ok(out) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                        {
                            pipe(inbound, out);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Relay { listen, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            to.shutdown(Shutdown::Write).ok();
        });
    };
    copy(a, b2);
    copy(b, a2);
}

/// The gateway address with `port`.
pub fn gateway(port: u16) -> SocketAddr {
    format!("{GATEWAY}:{port}").parse().expect("address")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
