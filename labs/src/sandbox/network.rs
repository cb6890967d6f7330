//! Only loopback, only its own: `lab` moves into a fresh network namespace before it starts
//! anything, so origin-sim, the grader's clients and the subject share one `lo` that nothing
//! else on the machine can reach — no other grading's ports, no network outside.
//!
//! A new network namespace holds one interface, `lo`, and it is down; bringing it up takes
//! one netlink message (RTM_NEWLINK with IFF_UP), written out here because it is 32 bytes
//! and a netlink crate would be the only user of one.

use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketType};
use std::sync::OnceLock;

/// What became of this process's network: `Ok` when it is in a namespace of its own.
static STATE: OnceLock<Result<(), String>> = OnceLock::new();

/// Whether this process grades in a network namespace of its own, and if not, why.
pub fn state() -> Result<(), String> {
    STATE
        .get()
        .cloned()
        .unwrap_or_else(|| Err("this grading did not make one: lab was used as a library".into()))
}

/// Moves this process into a new network namespace with `lo` up. Call it first thing in
/// `main`: without root it needs a user namespace, which a process may only enter while it
/// has one thread. Safe to call once; the outcome is what [`state`] says afterwards.
pub fn enter() -> Result<(), String> {
    let outcome = enter_now();
    let _ = STATE.set(outcome.clone());
    outcome
}

fn enter_now() -> Result<(), String> {
    if super::without("netns") {
        return Err("switched off by PROXYLAB_SANDBOX_WITHOUT".into());
    }
    let root = rustix::process::geteuid().is_root();
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    let mut flags = rustix::thread::UnshareFlags::NEWNET;
    if !root {
        flags |= rustix::thread::UnshareFlags::NEWUSER;
    }
    super::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if !root {
        super::map_user(uid.as_raw(), gid.as_raw())?;
    }
    loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
    // Prove it: a listener on 127.0.0.1 that a connection reaches.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::net::TcpStream::connect(addr).map_err(|e| format!("loopback does not answer: {e}"))?;
    Ok(())
}

/// `ip link set lo up`, as one RTM_NEWLINK request, and its acknowledgement.
pub(crate) fn loopback_up() -> std::io::Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const IFF_UP: u32 = 1;
    const NLMSG_ERROR: u16 = 2;
    // `lo` is always the first interface of a network namespace.
    const LO_INDEX: i32 = 1;
    // Protocol `None` is NETLINK_ROUTE, the one that configures links.
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let mut msg = Vec::with_capacity(32);
    // struct nlmsghdr: length, type, flags, sequence number, port id.
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family (AF_UNSPEC), padding, device type, index, flags, change mask.
    msg.extend_from_slice(&[0u8, 0u8]);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&LO_INDEX.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    let kernel = netlink::SocketAddrNetlink::new(0, 0);
    rustix::net::sendto(&fd, &msg, SendFlags::empty(), &kernel)?;
    let mut reply = [0u8; 256];
    let (n, _) = rustix::net::recv(&fd, &mut reply, RecvFlags::empty())?;
    // The acknowledgement is an NLMSG_ERROR whose error is 0.
    let field = |at: usize, len: usize| reply.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(std::io::Error::from_raw_os_error(-e)),
        _ => Err(std::io::Error::other("unexpected netlink reply")),
    }
}
