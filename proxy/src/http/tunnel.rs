//! CONNECT tunnels (RFC 9110 §9.3.6): how HTTPS goes through an HTTP proxy.
//!
//! Takes: a `CONNECT host:port` request the admission stage let through. [`open`] checks
//! the port policy and loops, dials, answers `200 Connection Established`, then [`relay`]
//! copies bytes both ways until both sides have finished, with the counts for the log. The proxy never sees inside (TLS is end to end).
//!
//! The two directions are independent: when one side finishes sending (its FIN), the proxy
//! passes the FIN on and keeps copying the other way (half-close) — closing both at the
//! first FIN is the classic student bug that cuts responses short. A tunnel with no bytes
//! either way for `--tunnel-idle-timeout` is closed. Lab 5 grades this module.

use crate::conn::{ClientConn, Next};
use crate::error::ProxyError;
use crate::http::target::Authority;
use crate::http::upstream::UpstreamConn;
use crate::http::wire::{Reader, RequestHead, ResponseHead};
use crate::observe::capture::{TapRead, TapWrite};
use crate::request::{Failure, RequestContext};
use crate::shared::Shared;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The CONNECT stage: port policy, loop check, dial, `200`, then bytes both ways until the
/// tunnel ends (the connection is never used for another request).
pub async fn open(
    shared: &Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    authority: Authority,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let config = &shared.config;
    if !config.connect_ports.allows(authority.port) {
        return Err(ProxyError::Forbidden(format!(
            "CONNECT to port {} is not allowed (allowed: {})",
            authority.port, config.connect_ports
        ))
        .into());
    }
    ctx.upstream = Some(authority.clone());
    let addrs = shared.upstreams.resolve(&authority).await?;
    if let Some(own) = addrs.iter().find(|a| is_self(**a, shared.local_addr)) {
        return Err(ProxyError::Loop(format!("{own} is the proxy's own address")).into());
    }
    let server = shared.upstreams.dial(&authority, &addrs).await?;
    ctx.upstream_peer = Some(server.peer);
    let mut ok = ResponseHead::new(200, "Connection Established");
    if let Some(via) = shared.via(head.version) {
        ok.headers.push("Via", via);
    }
    let mut out = Vec::with_capacity(128);
    ok.write_to(&mut out);
    conn.writer
        .write_all(&out)
        .await
        .map_err(Failure::client_gone)?;
    ctx.status = 200;
    ctx.head_down = out.len() as u64;
    ctx.result = "TCP_TUNNEL";
    let active = &shared.metrics.tunnels_active;
    active.fetch_add(1, Ordering::Relaxed);
    let stats = relay(conn, server, config.tunnel_idle_timeout).await;
    active.fetch_sub(1, Ordering::Relaxed);
    ctx.bytes_up = stats.up;
    ctx.bytes_down = stats.down;
    if stats.idled_out {
        ctx.error = Some(format!(
            "tunnel closed after {:?} without traffic ({} B up, {} B down)",
            config.tunnel_idle_timeout, stats.up, stats.down
        ));
    }
    Ok(Next::Close)
}

/// Whether `peer` is the proxy's own listening socket.
fn is_self(peer: SocketAddr, local: SocketAddr) -> bool {
    peer.port() == local.port()
        && (peer.ip() == local.ip() || (local.ip().is_unspecified() && peer.ip().is_loopback()))
}

/// What a tunnel carried, for the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    pub duration: Duration,
    /// Whether it ended because nothing moved for the idle timeout.
    pub idled_out: bool,
}

/// Copies bytes both ways between `client` and `server` until both directions are done.
pub async fn relay(client: &mut ClientConn, server: UpstreamConn, idle: Duration) -> TunnelStats {
    let started = Instant::now();
    let activity = Activity::new(started);
    let UpstreamConn {
        reader: mut server_rd,
        writer: mut server_wr,
        ..
    } = server;
    let (up, down) = tokio::join!(
        pump(&mut client.reader, &mut server_wr, &activity, idle),
        pump(&mut server_rd, &mut client.writer, &activity, idle),
    );
    TunnelStats {
        up: up.bytes,
        down: down.bytes,
        duration: started.elapsed(),
        idled_out: up.idled_out || down.idled_out,
    }
}

/// When the tunnel last moved a byte either way, as milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new(opened: Instant) -> Self {
        Activity {
            opened,
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

struct Pumped {
    bytes: u64,
    idled_out: bool,
}

/// One direction: whatever `src` had read ahead first, then everything until EOF, then a
/// FIN to `dst`. Waits no longer than `idle` past the last byte moved in either direction.
async fn pump(
    src: &mut Reader<TapRead>,
    dst: &mut TapWrite,
    activity: &Activity,
    idle: Duration,
) -> Pumped {
    let mut moved = 0u64;
    let ahead = src.take_buffered();
    if !ahead.is_empty() {
        if dst.write_all(&ahead).await.is_err() {
            return Pumped {
                bytes: 0,
                idled_out: false,
            };
        }
        moved += ahead.len() as u64;
        activity.touch();
    }
    // 64 KiB reads: fewer system calls per byte (tunnel throughput went from 77% to 88% of
    // a direct loopback copy in `make bench`).
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let wait = idle.saturating_sub(activity.idle_for());
        let read = match tokio::time::timeout(wait, src.get_mut().read(&mut buf)).await {
            Ok(r) => r,
            // The other direction may have been busy meanwhile: only give up if neither was.
            Err(_) if activity.idle_for() < idle => continue,
            Err(_) => {
                let _ = dst.shutdown().await;
                return Pumped {
                    bytes: moved,
                    idled_out: true,
                };
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if dst.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                moved += n as u64;
                activity.touch();
            }
        }
    }
    // Pass the end of this direction on; the other direction keeps going.
    let _ = dst.shutdown().await;
    Pumped {
        bytes: moved,
        idled_out: false,
    }
}
