//! Accepting clients and serving each connection's requests in turn.
//!
//! Takes: a bound listener and a shutdown future. Returns: when shutdown is asked for and
//! in-flight requests have finished (or the grace period ran out). Each accepted connection
//! gets its own task on the multi-threaded runtime, and a semaphore caps how many are
//! served at once: past the cap, new clients wait in the kernel's accept queue while
//! existing ones keep going. `--sequential` sets the cap to one, which is how lab 3 shows
//! why a proxy that serves one client at a time is not enough.

use crate::conn::{self, ClientConn, Next};
use crate::error::ProxyError;
use crate::http::wire::{HeadError, Reader, Version};
use crate::pipeline;
use crate::request::RequestContext;
use crate::shared::Shared;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// How long, at most, a closing connection keeps reading what the client still sends, so
/// that our last response is not destroyed by a TCP reset (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);

/// Serves clients on `listener` until `shutdown` completes, then drains.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(shared.config.concurrency()));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone of `done_tx`; when all are dropped, all finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    // The active-connection count lives in the metrics; the console shows it too.
    let active = &shared.metrics.connections_active;
    tokio::pin!(shutdown);
    if let Err(e) = shared.rules.watch() {
        tracing::warn!("rules: cannot watch the file ({e}); SIGHUP still reloads it");
    }
    let signals = tokio::spawn(on_signals(shared.clone()));

    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            conn = conn::accept(&listener) => conn,
            _ = &mut shutdown => break,
        };
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            connection(&shared, stream, peer, stop).await;
            drop(permit);
            drop(done);
        });
    }

    drop(listener);
    signals.abort();
    shared
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    drop(done_tx);
    let in_flight = active.load(Ordering::Relaxed);
    if in_flight > 0 {
        tracing::info!(
            "shutting down: waiting up to {:?} for {in_flight} connection(s)",
            shared.config.grace
        );
    }
    if tokio::time::timeout(shared.config.grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "grace period over; {} connection(s) cut off",
            active.load(Ordering::Relaxed)
        );
    }
    if let Some(log) = &shared.access_log {
        log.close();
    }
    if let Some(capture) = &shared.capture {
        capture.close();
    }
    Ok(())
}

/// One connection's task: counted in the metrics, announced on the console (with the
/// worker thread it runs on, as the demo shows), served, and announced again when it ends.
async fn connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    let now = metrics.connections_active.fetch_add(1, Ordering::Relaxed) + 1;
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    tracing::info!(
        "[NEW CONNECTION] {peer} on {} [ACTIVE CONNECTIONS] {now}",
        thread.name().unwrap_or("worker")
    );
    let started = Instant::now();
    let served = serve(shared, stream, peer, stop).await;
    let left = metrics.connections_active.fetch_sub(1, Ordering::Relaxed) - 1;
    tracing::info!(
        "[CLOSED] {peer} after {served} request{} in {:.1?} [ACTIVE CONNECTIONS] {left}",
        if served == 1 { "" } else { "s" },
        started.elapsed()
    );
}

/// SIGHUP reloads the rules file; SIGUSR1 reopens the access log (after rotation).
async fn on_signals(shared: Arc<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            tracing::warn!("cannot listen for SIGHUP and SIGUSR1");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the rules");
                    let _ = shared.rules.reload();
                }
                _ = usr1.recv() => {
                    if let Some(log) = &shared.access_log {
                        log.reopen();
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
}

/// Serves one client connection: requests one after another until either side closes.
/// Returns how many requests it served.
async fn serve(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let _ = stream.set_nodelay(true);
    let (read, writer) =
        crate::observe::capture::split(stream, shared.capture.as_ref(), peer, false);
    let mut conn = ClientConn {
        reader: Reader::new(read),
        writer,
        peer,
    };
    let config = &shared.config;
    let mut served = 0;
    loop {
        // Wait for the next request's first byte without holding a read buffer: an idle
        // keep-alive connection costs little more than its socket.
        conn.reader.shrink_if_empty();
        let wait = if served == 0 {
            config.header_timeout
        } else {
            config.idle_timeout
        };
        let ready = tokio::select! {
            r = tokio::time::timeout(wait, conn.reader.wait_readable()) => r,
            _ = stop.changed() => break,
        };
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            // A client that connected and never spoke gets told; an idle one is just closed.
            Err(_) if served == 0 => {
                answer_error(shared, &mut conn, ProxyError::HeaderTimeout).await;
                break;
            }
            Err(_) => break,
        }
        let deadline = tokio::time::Instant::now() + config.header_timeout;
        let head = match conn
            .reader
            .read_request_head(shared.limits, Some(deadline))
            .await
        {
            Ok(head) => head,
            Err(HeadError::Closed) => break,
            Err(HeadError::Io(e)) => {
                tracing::debug!(client = %peer, "read failed: {e}");
                break;
            }
            Err(e) => {
                answer_error(shared, &mut conn, e.into()).await;
                break;
            }
        };
        served += 1;
        // Boxed: the pipeline's state lives on the heap only while a request is in flight,
        // so an idle keep-alive connection's task stays small.
        let next = Box::pin(pipeline::handle(shared, &mut conn, head)).await;
        if next == Next::Close || *stop.borrow() {
            break;
        }
    }
    lingering_close(conn).await;
    served
}

/// Answers an error that happened before a request head could be read, and records it
/// like any request: a log line, an access-log line and the metrics.
async fn answer_error(shared: &Shared, conn: &mut ClientConn, err: ProxyError) {
    let id = shared.next_request_id();
    let mut ctx = RequestContext::refused(id, conn.peer, err.status(), err.to_string());
    let (head, body) = err.response(shared.via(Version::Http11));
    if let Ok(sent) = conn::respond(conn, Version::Http11, head, &body, Next::Close).await {
        ctx.sent(sent);
    }
    crate::observe::record(shared.access_log.as_ref(), &shared.metrics, &ctx);
}

/// Closes our side, then reads and drops what the client still sends for a short while.
async fn lingering_close(conn: ClientConn) {
    let ClientConn {
        reader, mut writer, ..
    } = conn;
    let _ = writer.shutdown().await;
    let (mut read, _) = reader.into_parts();
    // On the heap, and only now: as an array it was 4 KiB of every connection's task, from
    // its first request to its last.
    let mut scratch = vec![0u8; 4096];
    let mut budget = 1 << 20;
    let deadline = tokio::time::Instant::now() + LINGER;
    while budget > 0 {
        match tokio::time::timeout_at(deadline, read.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => budget -= n.min(budget),
            _ => break,
        }
    }
}

/// A proxy running in this process (for tests, benchmarks and the labs).
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
    admin: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Handle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, for a client's proxy setting.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `--admin` serves /metrics and /stats, when it was given.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Configuration and counters (the upstream pool's among them).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (within the grace period), returns.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((_, admin)) = self.admin.take() {
            admin.abort();
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

/// Binds `config.listen` and runs the proxy on the current runtime.
pub async fn start(config: crate::Config) -> io::Result<Handle> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let admin = bind_admin(&config).await?;
    let shared = Shared::new(config, addr)?;
    let admin = match admin {
        Some(listener) => Some((
            listener.local_addr()?,
            tokio::spawn(crate::observe::admin::serve(listener, shared.clone())),
        )),
        None => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, shared.clone(), async {
        let _ = stopped.await;
    }));
    Ok(Handle {
        addr,
        shared,
        stop: Some(stop),
        task,
        admin,
    })
}

/// Binds `--admin`'s address, when it was given.
pub async fn bind_admin(config: &crate::Config) -> io::Result<Option<TcpListener>> {
    match config.admin {
        Some(addr) => TcpListener::bind(addr).await.map(Some).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {addr} (--admin): {e}"))
        }),
        None => Ok(None),
    }
}

/// Completes on Ctrl-C or SIGTERM (what every proxylab server stops on).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
