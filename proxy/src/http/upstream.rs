//! Upstream connections: name resolution, dialing, and the keep-alive pool.
//!
//! Takes: an [`Authority`] the client asked for. Returns: an open connection to it, reused
//! from the pool when one is idle. Opening a TCP connection per request is the classic
//! student proxy's hidden cost (a handshake per request, ports in TIME_WAIT); the pool
//! keeps finished connections by host and port and hands them back out, after checking
//! that the server has not closed them meanwhile. Lab 2 checks reuse via `X-Origin-Conn`.

use crate::config::Config;
use crate::error::ProxyError;
use crate::http::reverse::Health;
use crate::http::target::Authority;
use crate::http::wire::Reader;
use crate::observe::capture::{Capture, TapRead, TapWrite};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One connection to an upstream server, split so a body can go up while the response
/// comes down.
#[derive(Debug)]
pub struct UpstreamConn {
    pub reader: Reader<TapRead>,
    pub writer: TapWrite,
    pub authority: Authority,
    pub peer: SocketAddr,
    /// Whether this connection served an earlier request (a failure on it may be a
    /// server-side idle close, which justifies one retry on a fresh connection).
    pub reused: bool,
}

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// Dials upstream servers and keeps idle connections for reuse.
#[derive(Debug)]
pub struct Upstreams {
    resolve: HashMap<String, IpAddr>,
    offline: bool,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
    capture: Option<Arc<Capture>>,
}

impl Upstreams {
    pub fn new(config: &Config, capture: Option<Arc<Capture>>) -> Self {
        Upstreams {
            resolve: config.resolve_map(),
            offline: config.offline,
            connect_timeout: config.connect_timeout,
            max_idle: config.pool_max_idle,
            idle_timeout: config.pool_idle_timeout,
            idle: Mutex::new(HashMap::new()),
            capture,
        }
    }

    /// An idle pooled connection to `authority`, if one is still open; else a new one.
    pub async fn checkout(&self, authority: &Authority) -> Result<UpstreamConn, ProxyError> {
        while let Some(conn) = self.take_idle(authority) {
            if still_open(&conn) {
                return Ok(conn);
            }
            tracing::debug!("pooled connection to {authority} was closed by the server; dropped");
        }
        tracing::debug!("no idle connection to {authority}; opening one");
        self.connect(authority).await
    }

    /// A connection to the first of `candidates` that accepts one (reverse mode and
    /// parents list several; forward mode one). Moving on is safe only because nothing was
    /// sent yet: a refused connection. `health`, when given, learns which are up and down.
    pub async fn checkout_first(
        &self,
        candidates: &[Authority],
        health: Option<&Health>,
    ) -> Result<UpstreamConn, ProxyError> {
        let mut last = None;
        for candidate in candidates {
            match self.checkout(candidate).await {
                Ok(conn) => {
                    if let Some(health) = health {
                        health.mark_up(candidate);
                    }
                    return Ok(conn);
                }
                Err(e @ ProxyError::Connect { .. }) => {
                    if let Some(health) = health {
                        health.mark_down(candidate);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ProxyError::NotImplemented("a request with no upstream".into())))
    }

    /// Opens a new connection, never from the pool.
    pub async fn connect(&self, authority: &Authority) -> Result<UpstreamConn, ProxyError> {
        let addrs = self.resolve(authority).await?;
        self.dial(authority, &addrs).await
    }

    /// Connects to the first of `addrs` that answers.
    pub async fn dial(
        &self,
        authority: &Authority,
        addrs: &[SocketAddr],
    ) -> Result<UpstreamConn, ProxyError> {
        let dial = async {
            let addrs = addrs.to_vec();
            let mut last = None;
            for addr in &addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok((stream, *addr)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| "no address".to_string(), |e| e.to_string()))
        };
        let (stream, peer) = match tokio::time::timeout(self.connect_timeout, dial).await {
            Err(_) => return Err(ProxyError::ConnectTimeout(authority.to_string())),
            Ok(Err(reason)) => {
                return Err(ProxyError::Connect {
                    addr: authority.to_string(),
                    reason,
                })
            }
            Ok(Ok(s)) => s,
        };
        // Small heads and bodies should leave at once, not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let (read, writer) =
            crate::observe::capture::split(stream, self.capture.as_ref(), peer, true);
        Ok(UpstreamConn {
            reader: Reader::new(read),
            writer,
            authority: authority.clone(),
            peer,
            reused: false,
        })
    }

    /// Idle pooled connections, over every server (for metrics).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map_or(0, |idle| idle.values().map(Vec::len).sum())
    }

    /// Returns a connection whose last response ended cleanly, for the next request.
    pub fn checkin(&self, mut conn: UpstreamConn) {
        if self.max_idle == 0 || !conn.reader.buffered().is_empty() {
            return;
        }
        conn.reused = true;
        // A pooled connection keeps a small read buffer: no allocation per request.
        conn.reader.shrink_if_large();
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let list = idle.entry(conn.authority.clone()).or_default();
        let now = Instant::now();
        list.retain(|i| now.duration_since(i.since) < self.idle_timeout);
        if list.len() < self.max_idle {
            list.push(Idle { conn, since: now });
        }
    }

    fn take_idle(&self, authority: &Authority) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) < self.idle_timeout {
                return Some(entry.conn);
            }
        }
        None
    }

    /// The addresses for `authority`: an IP literal, a `--resolve` entry, `localhost`, or
    /// (unless `--offline`) the system resolver.
    pub async fn resolve(&self, authority: &Authority) -> Result<Vec<SocketAddr>, ProxyError> {
        if let Ok(ip) = authority.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, authority.port)]);
        }
        if let Some(ip) = self.resolve.get(&authority.host) {
            return Ok(vec![SocketAddr::new(*ip, authority.port)]);
        }
        // `localhost` is loopback by definition (RFC 6761): no resolver needed.
        if authority.host == "localhost" || authority.host.ends_with(".localhost") {
            let v4 = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), authority.port);
            let v6 = SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), authority.port);
            return Ok(vec![v4, v6]);
        }
        if self.offline {
            return Err(ProxyError::Unresolvable(authority.host.clone()));
        }
        let lookup = tokio::net::lookup_host((authority.host.as_str(), authority.port));
        match tokio::time::timeout(self.connect_timeout, lookup).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<_> = addrs.collect();
                if addrs.is_empty() {
                    Err(ProxyError::Unresolvable(authority.host.clone()))
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(_)) => Err(ProxyError::Unresolvable(authority.host.clone())),
            Err(_) => Err(ProxyError::ConnectTimeout(authority.to_string())),
        }
    }
}

/// A pooled connection is usable only if the server has neither closed it nor sent
/// anything unasked; a non-blocking one-byte read tells which.
fn still_open(conn: &UpstreamConn) -> bool {
    let mut probe = [0u8; 1];
    match conn.reader.get_ref().try_read(&mut probe) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}
