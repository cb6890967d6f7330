//! What the grader sees of a subject's process: a port for it, its output, when it is ready.
//! (Its start, limits, isolation and end are the sandbox's: [`crate::sandbox`].)
//!
//! The grader must not change what it measures, and a student's program is fragile in ways
//! ours is not. So:
//!
//! - **Readiness is seen, not tested.** On Linux a program is ready when a LISTEN socket on
//!   its port appears in `/proc/net/tcp` or `/proc/net/tcp6` and belongs to a process of the
//!   subject (a descendant of its room's keeper). The grader never opens an empty
//!   connection to find out: a CS:APP-style proxy dies of SIGPIPE answering one, and a chat
//!   server announces it as a member. Elsewhere (no `/proc`) a connection is the fallback.
//! - **Its output is always drained.** stdout and stderr are read continuously by two
//!   threads (a program that logs a lot never blocks on a full pipe), the last lines are
//!   kept for the report, and with an output file everything up to a bound goes there.
//! - **Its port is its own.** Ports are picked outside the kernel's ephemeral range (where
//!   the grader's own listeners and connections get theirs) and never handed out twice by one
//!   grader process, so parallel checks cannot meet on one port.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`, also after a panic elsewhere (the data here stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// Ports

/// Ports this process has handed out (never again, until the range runs out).
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The kernel's ephemeral range (`bind(0)` and outgoing connections take ports from it).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A free port for a subject: below the ephemeral range (or above it when it starts low),
/// bindable on 127.0.0.1 and on every address right now, and not handed out before by this
/// process.
pub fn pick_port() -> std::io::Result<u16> {
    let (low, high) = ephemeral_range();
    let (from, to) = if low > 12_000 {
        (10_000u16, low - 1)
    } else {
        (high.saturating_add(1).max(1024), 65_535)
    };
    let span = u32::from(to - from) + 1;
    // A different starting point per process and call, without a random-number crate.
    let start = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        (h.finish() % u64::from(span)) as u32
    };
    let mut given = lock(&GIVEN);
    let given = given.get_or_insert_with(HashSet::new);
    if given.len() as u32 >= span {
        given.clear();
    }
    for i in 0..span {
        let port = from + ((start + i) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        let free = |ip: Ipv4Addr| std::net::TcpListener::bind((ip, port)).is_ok();
        if free(Ipv4Addr::LOCALHOST) && free(Ipv4Addr::UNSPECIFIED) {
            given.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port between {from} and {to}"),
    ))
}

// ---------------------------------------------------------------------------------------
// Output

/// How many bytes of the subject's output the report keeps (its last lines).
const TAIL_BYTES: usize = 8 * 1024;
/// How much of the subject's output an output file takes, at most.
pub const OUTPUT_FILE_LIMIT: u64 = 4 << 20;

#[derive(Debug, Default)]
struct OutputState {
    tail: VecDeque<u8>,
    total: u64,
    file: Option<(std::fs::File, PathBuf)>,
    written: u64,
    echo: bool,
}

/// What the subject wrote on stdout and stderr (interleaved as it arrived).
#[derive(Debug, Clone, Default)]
pub struct Output(Arc<Mutex<OutputState>>);

impl Output {
    /// `file`: also write everything (up to [`OUTPUT_FILE_LIMIT`]) there; `echo`: also copy
    /// it to this process's stderr (`lab repro`).
    pub fn new(file: Option<&Path>, echo: bool) -> std::io::Result<Output> {
        let file = match file {
            Some(p) => Some((std::fs::File::create(p)?, p.to_path_buf())),
            None => None,
        };
        Ok(Output(Arc::new(Mutex::new(OutputState {
            file,
            echo,
            ..OutputState::default()
        }))))
    }

    fn take(&self, bytes: &[u8]) {
        let mut s = lock(&self.0);
        s.total += bytes.len() as u64;
        s.tail.extend(bytes);
        let excess = s.tail.len().saturating_sub(TAIL_BYTES);
        s.tail.drain(..excess);
        let room = OUTPUT_FILE_LIMIT.saturating_sub(s.written);
        let n = (bytes.len() as u64).min(room) as usize;
        if let Some((file, _)) = s.file.as_mut() {
            if n > 0 && file.write_all(&bytes[..n]).is_ok() {
                s.written += n as u64;
            }
        }
        if s.echo {
            let _ = std::io::stderr().write_all(bytes);
        }
    }

    /// Bytes written so far.
    pub fn total(&self) -> u64 {
        lock(&self.0).total
    }

    /// The last `n` non-empty lines, each cut to 200 characters.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let s = lock(&self.0);
        let (a, b) = s.tail.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let mut lines: Vec<String> = text
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(n)
            .map(|l| {
                let l = l.trim_end();
                if l.chars().count() > 200 {
                    format!("{}…", l.chars().take(200).collect::<String>())
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.reverse();
        lines
    }

    /// Where the whole output went, if to a file.
    pub fn file(&self) -> Option<PathBuf> {
        lock(&self.0).file.as_ref().map(|(_, p)| p.clone())
    }

    /// Drains `pipe` into this output on a thread of its own, until the pipe closes.
    pub(crate) fn drain(&self, mut pipe: impl Read + Send + 'static) {
        let output = self.clone();
        let _ = std::thread::Builder::new()
            .name("lab-subject-output".into())
            .spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => output.take(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            });
    }
}

// ---------------------------------------------------------------------------------------
// Readiness

/// What `/proc/net/tcp{,6}` says about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    /// Nothing listens on it yet.
    No,
    /// A socket listens where 127.0.0.1 reaches it; `owned`: it belongs to the subject's
    /// process group (`None`: no group was asked about).
    Yes { owned: Option<bool> },
    /// Something listens on the port, but not where a connection to 127.0.0.1 arrives
    /// (for example only on `::1` or on another address).
    Elsewhere(Vec<IpAddr>),
}

/// One LISTEN socket: its address and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenSocket {
    ip: IpAddr,
    port: u16,
    inode: u64,
}

/// Parses a `/proc/net/tcp` (or `tcp6`) table: its LISTEN sockets.
fn listen_sockets(table: &str, v6: bool) -> Vec<ListenSocket> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        if fields.len() < 10 || fields[3] != "0A" {
            continue;
        }
        let Some((ip_hex, port_hex)) = fields[1].split_once(':') else {
            continue;
        };
        let (Ok(port), Ok(inode)) = (u16::from_str_radix(port_hex, 16), fields[9].parse::<u64>())
        else {
            continue;
        };
        let Some(ip) = parse_proc_ip(ip_hex, v6) else {
            continue;
        };
        out.push(ListenSocket { ip, port, inode });
    }
    out
}

/// `/proc/net/tcp` addresses are 32-bit words in the host's byte order (little-endian on
/// every machine this runs on), 1 word for IPv4, 4 for IPv6.
fn parse_proc_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match (v6, bytes.len()) {
        (false, 4) => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        (true, 16) => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Whether a connection to 127.0.0.1 reaches a socket listening on `ip`.
fn reaches_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4 == Ipv4Addr::LOCALHOST,
        // `::` takes IPv4 too unless IPV6_V6ONLY (not visible here; it is the default off).
        IpAddr::V6(v6) => v6.is_unspecified() || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST),
    }
}

/// The socket inodes open in processes of process group `pgid` (or descended from it).
fn group_socket_inodes(pgid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return inodes;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !in_group(pid, pgid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    inodes.insert(n);
                }
            }
        }
    }
    inodes
}

/// Fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, …
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is in process group `pgid`, or a descendant of its leader (a program that
/// made a group of its own).
fn in_group(pid: u32, pgid: u32) -> bool {
    let mut pid = pid;
    for _ in 0..32 {
        if pid == pgid {
            return true;
        }
        let Some(fields) = stat_fields(pid) else {
            return false;
        };
        let (ppid, pgrp) = (
            fields.get(1).and_then(|s| s.parse::<u32>().ok()),
            fields.get(2).and_then(|s| s.parse::<u32>().ok()),
        );
        if pgrp == Some(pgid) {
            return true;
        }
        match ppid {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// What listens on `port`, from `/proc/net/tcp{,6}`; `None` where those files do not exist
/// (not Linux), so the caller falls back to a connection. With `pgid`, whether the socket
/// belongs to that process group.
pub fn listening(port: u16, pgid: Option<u32>) -> Option<Listening> {
    let v4 = std::fs::read_to_string("/proc/net/tcp").ok();
    let v6 = std::fs::read_to_string("/proc/net/tcp6").ok();
    if v4.is_none() && v6.is_none() {
        return None;
    }
    let mut sockets = v4.map(|t| listen_sockets(&t, false)).unwrap_or_default();
    sockets.extend(v6.map(|t| listen_sockets(&t, true)).unwrap_or_default());
    sockets.retain(|s| s.port == port);
    if sockets.is_empty() {
        return Some(Listening::No);
    }
    let reachable: Vec<&ListenSocket> = sockets.iter().filter(|s| reaches_loopback(s.ip)).collect();
    if reachable.is_empty() {
        return Some(Listening::Elsewhere(sockets.iter().map(|s| s.ip).collect()));
    }
    let owned = pgid.map(|g| {
        let mine = group_socket_inodes(g);
        reachable.iter().any(|s| mine.contains(&s.inode))
    });
    Some(Listening::Yes { owned })
}

/// How many bytes the subject has received on its end of the connection from the grader's
/// `client` port to its `server` port but not yet read (`rx_queue` in `/proc/net/tcp*`);
/// `None` when `/proc` cannot tell (no such connection, or not Linux).
pub fn unread_by_subject(server: u16, client: u16) -> Option<u64> {
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 {
                continue;
            }
            let port = |field: &str| {
                field
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if port(f[1]) == Some(server) && port(f[2]) == Some(client) {
                return f[4]
                    .split_once(':')
                    .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
            }
        }
    }
    None
}

/// Waits until the subject has read every byte the grader sent it on the connection from
/// `client` (a causal way to know a piece of a message has been taken before sending the
/// next one, so that a program that takes one `recv()` for a whole message shows it). Gives
/// up at `deadline`; where `/proc` cannot tell, waits a moment instead.
pub async fn until_read(server: u16, client: u16, deadline: tokio::time::Instant) {
    if unread_by_subject(server, client).is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        return;
    }
    while unread_by_subject(server, client).is_some_and(|n| n > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Whether something listens at `addr`, for a subject the grader did not start (`--addr`):
/// from `/proc` when `addr` is on this machine's loopback, else by connecting once.
pub async fn something_listens(addr: SocketAddr) -> bool {
    if addr.ip().is_loopback() {
        if let Some(state) = listening(addr.port(), None) {
            return matches!(state, Listening::Yes { .. });
        }
    }
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_tables_parse() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1\n   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17 1\n";
        let s = listen_sockets(v4, false);
        assert_eq!(
            s,
            vec![
                ListenSocket {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    inode: 4242
                },
                ListenSocket {
                    ip: "0.0.0.0".parse().unwrap(),
                    port: 80,
                    inode: 17
                },
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 99 1\n   1: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 98 1\n";
        let s = listen_sockets(v6, true);
        assert_eq!(s[0].ip, "::1".parse::<IpAddr>().unwrap());
        assert!(!reaches_loopback(s[0].ip));
        assert_eq!(s[1].ip, "::".parse::<IpAddr>().unwrap());
        assert!(reaches_loopback(s[1].ip));
    }

    #[test]
    fn a_listener_of_ours_is_seen_and_owned_by_our_group_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let Some(seen) = listening(port, None) else {
            return; // not Linux: the fallback is a connection, tested elsewhere
        };
        assert_eq!(seen, Listening::Yes { owned: None });
        // This test process is not in the group of a process that does not exist.
        assert_eq!(
            listening(port, Some(u32::MAX - 1)),
            Some(Listening::Yes { owned: Some(false) })
        );
        drop(listener);
        assert_eq!(listening(port, None), Some(Listening::No));
    }

    #[test]
    fn picked_ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| pick_port().unwrap()).collect();
        assert!(ports.iter().all(|&p| p < low || p > high), "{ports:?}");
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn output_keeps_the_last_lines_and_a_bounded_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.log");
        let out = Output::new(Some(&file), false).unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        for i in 0..5000 {
            out.take(format!("{i} {line}").as_bytes());
        }
        assert!(out.total() > 5_000_000);
        let last = out.last_lines(2);
        assert_eq!(last.len(), 2);
        assert!(last[1].starts_with("4999 x"), "{last:?}");
        assert!(last[1].ends_with('…'));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), OUTPUT_FILE_LIMIT);
    }
}
