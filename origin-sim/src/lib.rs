//! origin-sim: a deterministic simulated origin server.
//!
//! Every test, benchmark and lab needs a web server that behaves the same way every time,
//! runs offline on loopback, and can misbehave on purpose. origin-sim is that server.
//!
//! - Bodies come from a seed ([`seeded_body`]), never from a clock, so a test can compute
//!   the exact bytes it should receive.
//! - Every response carries `X-Origin-Hits: N` (requests this path and query have received)
//!   and `X-Origin-Conn: K` (which TCP connection, counting from 1), so a test can prove a
//!   cache hit never reached the origin and a proxy reused its upstream connection.
//! - It speaks HTTP/1.1 by hand (with the proxy's own [`proxy::http::wire`] layer) so that it can
//!   also break the protocol on purpose: reset mid-body, hang, truncate, malformed status.
//!
//! The routes are listed in [`ROUTES`] (and `origin-sim --help`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), origin_sim::StartError> {
//! let origin = origin_sim::start(origin_sim::Config::default()).await?;
//! println!("GET {}/bytes/100", origin.url());
//! origin.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod chat;
pub mod echo;
mod routes;
pub mod tls;

use proxy::http::wire::{HeadError, Limits, Reader};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use routes::ROUTES;
pub use tls::Tls;

/// The seed bodies come from when none is given.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// origin-sim's settings: which listeners to start, and the seed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP listener binds (port 0 picks one).
    pub http: SocketAddr,
    /// Where the HTTPS listener binds, if any (same routes, certificate from a fresh CA).
    pub tls: Option<SocketAddr>,
    /// Where the TCP echo server binds, if any.
    pub echo: Option<SocketAddr>,
    /// Where the chat room binds, if any.
    pub chat: Option<SocketAddr>,
    /// The seed for every generated body.
    pub seed: u64,
    /// Record every plain HTTP connection (both directions) in this capture (the grader's
    /// `--pcap-dir`).
    pub capture: Option<Arc<proxy::observe::capture::Capture>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            echo: None,
            chat: None,
            seed: DEFAULT_SEED,
            capture: None,
        }
    }
}

impl Config {
    /// Every listener on 127.0.0.1 with a free port (for tests).
    pub fn all_on_loopback() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Config {
            tls: Some(any),
            echo: Some(any),
            chat: Some(any),
            ..Config::default()
        }
    }
}

/// State shared by every connection: the seed and the counters tests read.
#[derive(Debug)]
pub struct Origin {
    seed: u64,
    hits: Mutex<HashMap<String, u64>>,
    connections: AtomicU64,
    requests: AtomicU64,
    /// 304 answers sent to conditional requests (a cache revalidating).
    not_modified: AtomicU64,
    /// Where plain HTTP connections are recorded, if anywhere.
    capture: Option<Arc<proxy::observe::capture::Capture>>,
    /// `/gate/NAME` responses wait until their gate is opened (by `/open/NAME` or
    /// [`Origin::open_gate`]): a test can hold a response as long as it needs, causally.
    gates: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// The last requests, as they arrived ([`Origin::seen`]).
    seen: Mutex<VecDeque<Seen>>,
    /// The connections open now, by id.
    open: Mutex<std::collections::HashSet<u64>>,
}

/// How many requests [`Origin::seen`] remembers.
const SEEN_KEPT: usize = 4096;

/// A request as the origin received it: what a grader or a test checks a proxy sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The request-target as it arrived.
    pub target: String,
    /// The path and query it was answered for (`target` in origin-form).
    pub path: String,
    /// The target came in absolute-form (`http://host/path`): servers must accept it
    /// (RFC 9112 §3.2.2), but a proxy sends origin-form (§3.2.1).
    pub absolute: bool,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'static str,
    /// Which connection it came on (as `X-Origin-Conn`).
    pub conn: u64,
    /// origin-sim wrote its whole response (a grader can then tell a program that waits for
    /// the origin to close from one the origin failed).
    pub answered: bool,
}

/// The origin-form (path and query) of a request-target, and whether it was absolute-form.
/// `http://host:port/p?q` gives `/p?q`; `http://host` gives `/`.
pub fn origin_form(target: &str) -> (String, bool) {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return (target.to_string(), false);
    };
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (rest[i..].to_string(), true),
        Some(i) => (format!("/{}", &rest[i..]), true),
        None => ("/".to_string(), true),
    }
}

impl Origin {
    pub fn new(seed: u64) -> Self {
        Origin {
            seed,
            hits: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            capture: None,
            gates: Mutex::new(HashMap::new()),
            seen: Mutex::new(VecDeque::new()),
            open: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Whether connection `conn` (as `X-Origin-Conn` and [`Seen::conn`] name it) is still
    /// open: origin-sim keeps HTTP/1.1 connections open after a response, as RFC 9112 §9.3
    /// lets it, until the client closes them.
    pub fn connection_open(&self, conn: u64) -> bool {
        match self.open.lock() {
            Ok(o) => o.contains(&conn),
            Err(poisoned) => poisoned.into_inner().contains(&conn),
        }
    }

    fn set_open(&self, conn: u64, open: bool) {
        let mut all = match self.open.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        };
        if open {
            all.insert(conn);
        } else {
            all.remove(&conn);
        }
    }

    /// The request in progress on `conn` has had its whole response.
    fn answered(&self, conn: u64) {
        let mut all = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(seen) = all.iter_mut().rev().find(|s| s.conn == conn) {
            seen.answered = true;
        }
    }

    /// The requests received so far (the last 4096), oldest first, as they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        match self.seen.lock() {
            Ok(s) => s.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    fn record(&self, seen: Seen) {
        let mut all = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if all.len() == SEEN_KEPT {
            all.pop_front();
        }
        all.push_back(seen);
    }

    /// Runs `f` on gate `name`'s sender (created closed when first named).
    fn with_gate<T>(&self, name: &str, f: impl FnOnce(&watch::Sender<bool>) -> T) -> T {
        let mut gates = match self.gates.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(gates
            .entry(name.to_string())
            .or_insert_with(|| watch::channel(false).0))
    }

    /// Opens gate `name`: held `/gate/NAME` responses go out, later ones do not wait.
    pub fn open_gate(&self, name: &str) {
        self.with_gate(name, |gate| gate.send_replace(true));
    }

    /// Closes gate `name` again: later `/gate/NAME` responses wait.
    pub fn close_gate(&self, name: &str) {
        self.with_gate(name, |gate| gate.send_replace(false));
    }

    /// Waits until gate `name` is open.
    pub(crate) async fn wait_gate(&self, name: &str) {
        let mut gate = self.with_gate(name, |gate| gate.subscribe());
        let _ = gate.wait_for(|open| *open).await;
    }

    /// How many requests `target` (path and query) has received.
    pub fn hits(&self, target: &str) -> u64 {
        self.hits
            .lock()
            .map(|h| h.get(target).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every target starting with `prefix` (but `/hits` itself) and how many times it was
    /// requested, in order of target.
    pub fn hits_under(&self, prefix: &str) -> Vec<(String, u64)> {
        let Ok(hits) = self.hits.lock() else {
            return Vec::new();
        };
        let mut found: Vec<(String, u64)> = hits
            .iter()
            .filter(|(t, _)| t.starts_with(prefix) && !t.starts_with("/hits"))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        found.sort();
        found
    }

    /// How many 304 (Not Modified) answers conditional requests have had: a cache that
    /// revalidates a stored response shows up here.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }

    pub(crate) fn count_not_modified(&self) {
        self.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests received so far, over all paths.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count_hit(&self, target: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Ok(mut hits) = self.hits.lock() else {
            return 0;
        };
        let n = hits.entry(target.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

/// Serves HTTP on `listener` until `shutdown` completes; with `tls`, HTTPS.
pub async fn serve_http(
    listener: TcpListener,
    origin: Arc<Origin>,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            conn = proxy::conn::accept(&listener) => conn,
            _ = &mut shutdown => break,
        };
        let conn_id = origin.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let origin = origin.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => serve_plain(origin, stream, peer, conn_id, stop).await,
                Some(tls) => serve_tls(origin, stream, tls, conn_id, stop).await,
            };
            if let Err(e) = result {
                tracing::debug!("connection {conn_id} from {peer}: {e}");
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

async fn serve_plain(
    origin: Arc<Origin>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, writer) =
        proxy::observe::capture::split(stream, origin.capture.as_ref(), peer, false);
    let conn = routes::Conn {
        reader: Reader::new(read),
        writer,
    };
    if let Some(conn) = connection(origin, conn, conn_id, stop).await? {
        let (read, _) = conn.reader.into_parts();
        let stream = read.reunite(conn.writer)?;
        // Linger 0: closing now sends RST instead of FIN.
        stream.set_zero_linger()?;
    }
    Ok(())
}

async fn serve_tls(
    origin: Arc<Origin>,
    stream: TcpStream,
    tls: Tls,
    conn_id: u64,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let stream = tls.acceptor.accept(stream).await?;
    let (read, writer) = tokio::io::split(stream);
    let conn = routes::Conn {
        reader: Reader::new(read),
        writer,
    };
    if let Some(conn) = connection(origin, conn, conn_id, stop).await? {
        let (read, _) = conn.reader.into_parts();
        let (tcp, _) = read.unsplit(conn.writer).into_inner();
        // No TLS close_notify: reset the TCP connection under it.
        tcp.set_zero_linger()?;
    }
    Ok(())
}

/// Whether the connection stays open after a response.
pub(crate) enum After {
    KeepAlive,
    Close,
    /// Close with a TCP reset (RST) instead of a FIN.
    Reset,
}

/// Serves requests on one connection; returns it when the route asked for a reset.
async fn connection<R: routes::Rd, W: routes::Wr>(
    origin: Arc<Origin>,
    conn: routes::Conn<R, W>,
    conn_id: u64,
    stop: watch::Receiver<bool>,
) -> io::Result<Option<routes::Conn<R, W>>> {
    origin.set_open(conn_id, true);
    let served = requests(&origin, conn, conn_id, stop).await;
    origin.set_open(conn_id, false);
    served
}

async fn requests<R: routes::Rd, W: routes::Wr>(
    origin: &Arc<Origin>,
    mut conn: routes::Conn<R, W>,
    conn_id: u64,
    mut stop: watch::Receiver<bool>,
) -> io::Result<Option<routes::Conn<R, W>>> {
    loop {
        let head = tokio::select! {
            h = conn.reader.read_request_head(Limits::default(), None) => h,
            _ = stop.changed() => return Ok(None),
        };
        let mut head = match head {
            Ok(h) => h,
            Err(HeadError::Closed) => return Ok(None),
            Err(HeadError::Io(e)) => return Err(e),
            Err(e) => {
                let msg = format!("origin-sim: bad request: {e}\n");
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                );
                conn.writer.write_all(reply.as_bytes()).await?;
                return Ok(None);
            }
        };
        // Absolute-form is answered like origin-form (a server MUST accept it, RFC 9112
        // §3.2.2), and recorded as it came, so a grader can tell a proxy that forwards the
        // absolute URL by that one mistake.
        let received = std::mem::take(&mut head.target);
        let (path, absolute) = origin_form(&received);
        head.target = path;
        origin.record(Seen {
            method: head.method.clone(),
            target: received.clone(),
            path: head.target.clone(),
            absolute,
            version: head.version.as_str(),
            conn: conn_id,
            answered: false,
        });
        let hits = origin.count_hit(&head.target);
        let exchange = routes::Exchange {
            origin,
            received,
            head,
            hits,
            conn_id,
        };
        let after = routes::respond(exchange, &mut conn).await?;
        origin.answered(conn_id);
        match after {
            After::KeepAlive => continue,
            After::Close => {
                let _ = conn.writer.shutdown().await;
                return Ok(None);
            }
            After::Reset => return Ok(Some(conn)),
        }
    }
}

/// An origin-sim running in this process (for tests, benchmarks and labs).
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    echo_addr: Option<SocketAddr>,
    chat_addr: Option<SocketAddr>,
    tls: Option<Tls>,
    origin: Arc<Origin>,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<io::Result<()>>>,
}

impl Handle {
    /// The HTTP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The HTTPS listener's address, if started.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The TCP echo server's address, if started.
    pub fn echo_addr(&self) -> Option<SocketAddr> {
        self.echo_addr
    }

    /// The chat room's address, if started.
    pub fn chat_addr(&self) -> Option<SocketAddr> {
        self.chat_addr
    }

    /// The CA certificate (PEM) that signed the HTTPS listener's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// The counters: hits per path, connections, requests.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// Stops accepting on every listener and closes idle connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Why origin-sim could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The bound listeners of a [`Config`], before serving (so a binary can print their
/// addresses first).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub tls: Option<(TcpListener, Tls)>,
    pub echo: Option<TcpListener>,
    pub chat: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        }
        let tls = match config.tls {
            Some(addr) => Some((bind(addr).await?, Tls::generate()?)),
            None => None,
        };
        Ok(Listeners {
            http: bind(config.http).await?,
            tls,
            echo: match config.echo {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
            chat: match config.chat {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
        })
    }

    /// The `<name> listening on <url>` lines, one per listener.
    pub fn describe(&self) -> Vec<String> {
        let addr = |l: &TcpListener| {
            l.local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string())
        };
        let mut lines = vec![format!(
            "origin-sim http listening on http://{}",
            addr(&self.http)
        )];
        if let Some((l, _)) = &self.tls {
            lines.push(format!("origin-sim https listening on https://{}", addr(l)));
        }
        if let Some(l) = &self.echo {
            lines.push(format!("origin-sim echo listening on tcp://{}", addr(l)));
        }
        if let Some(l) = &self.chat {
            lines.push(format!("origin-sim chat listening on tcp://{}", addr(l)));
        }
        lines
    }

    /// Serves every listener on the current runtime until [`Handle::shutdown`].
    pub fn spawn(self, seed: u64) -> io::Result<Handle> {
        self.spawn_with(Origin::new(seed))
    }

    /// Like [`Listeners::spawn`], with an [`Origin`] set up by the caller (a capture, say).
    pub fn spawn_with(self, origin: Origin) -> io::Result<Handle> {
        let origin = Arc::new(origin);
        let (stop, stopped) = watch::channel(false);
        let when_stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let addr = self.http.local_addr()?;
        let mut tasks = vec![tokio::spawn(serve_http(
            self.http,
            origin.clone(),
            None,
            when_stopped(),
        ))];
        let (mut tls_addr, mut tls) = (None, None);
        if let Some((listener, material)) = self.tls {
            tls_addr = Some(listener.local_addr()?);
            tls = Some(material.clone());
            tasks.push(tokio::spawn(serve_http(
                listener,
                origin.clone(),
                Some(material),
                when_stopped(),
            )));
        }
        let mut echo_addr = None;
        if let Some(listener) = self.echo {
            echo_addr = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(echo::serve(listener, when_stopped())));
        }
        let mut chat_addr = None;
        if let Some(listener) = self.chat {
            chat_addr = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(chat::serve(listener, when_stopped())));
        }
        Ok(Handle {
            addr,
            tls_addr,
            echo_addr,
            chat_addr,
            tls,
            origin,
            stop: Some(stop),
            tasks,
        })
    }
}

/// Binds every listener in `config` and serves on the current runtime.
pub async fn start(config: Config) -> Result<Handle, StartError> {
    let listeners = Listeners::bind(&config).await?;
    let mut origin = Origin::new(config.seed);
    origin.capture = config.capture.clone();
    Ok(listeners.spawn_with(origin)?)
}

/// A deterministic byte generator (SplitMix64): the same seed and length always give the
/// same bytes, so tests can check every byte a proxy delivered. In text mode
/// ([`SeededBytes::text`]) the same stream becomes printable ASCII in lines of 64 bytes,
/// the last byte a newline: a body that survives a program which reads text line by line,
/// for checks that are about something other than binary safety.
#[derive(Debug, Clone)]
pub struct SeededBytes {
    state: u64,
    word: [u8; 8],
    used: usize,
    /// Text mode: the body's length, and how many bytes have been given.
    text: Option<(u64, u64)>,
}

/// The 64 characters a text body is made of.
const TEXT: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";

impl SeededBytes {
    /// The stream for a body of `len` bytes under `seed`.
    pub fn new(seed: u64, len: u64) -> Self {
        SeededBytes {
            state: seed ^ len.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            word: [0; 8],
            used: 8,
            text: None,
        }
    }

    /// The stream for a text body of `len` bytes under `seed`.
    pub fn text(seed: u64, len: u64) -> Self {
        SeededBytes {
            text: Some((len, 0)),
            ..SeededBytes::new(seed, len)
        }
    }

    /// The next random number (also used for chunk sizes).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.word = self.next_u64().to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
            if let Some((len, at)) = &mut self.text {
                *b = if *at % 64 == 63 || *at + 1 == *len {
                    b'\n'
                } else {
                    TEXT[usize::from(*b % 64)]
                };
                *at += 1;
            }
        }
    }
}

/// The body `/bytes/{len}` (and `/chunked`, `/close`, `/drip`, `/truncate`) sends.
pub fn seeded_body(seed: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0; len as usize];
    SeededBytes::new(seed, len).fill(&mut out);
    out
}

/// The seeded body of `len` bytes origin-sim sends for `target`: text for `/text/…` and
/// `/cache/…?text=N`, binary otherwise.
pub fn seeded_for(seed: u64, target: &str, len: u64) -> Vec<u8> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let text = path.starts_with("/text/")
        || (path.starts_with("/cache/") && query.split('&').any(|kv| kv.starts_with("text=")));
    if text {
        seeded_text(seed, len)
    } else {
        seeded_body(seed, len)
    }
}

/// The body `/text/{len}` (and `/text/chunked/{len}`, `/text/close/{len}`, `/cache` with
/// `?text=N`) sends: printable ASCII in lines of 64 bytes, ending with a newline.
pub fn seeded_text(seed: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0; len as usize];
    SeededBytes::text(seed, len).fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn a_text_body_is_printable_lines_ending_with_a_newline_and_deterministic() {
        let text = seeded_text(7, 1000);
        assert_eq!(text.len(), 1000);
        assert_eq!(text, seeded_text(7, 1000));
        assert!(text.ends_with(b"\n"));
        assert!(text
            .split(|&b| b == b'\n')
            .all(|line| line.len() <= 63 && line.iter().all(|b| TEXT.contains(b))));
        assert_eq!(seeded_text(7, 1), b"\n");
        assert_ne!(seeded_text(7, 1000), seeded_text(8, 1000));
        assert_eq!(seeded_for(7, "/text/9?lab=x", 9), seeded_text(7, 9));
        assert_eq!(seeded_for(7, "/text/chunked/9", 9), seeded_text(7, 9));
        assert_eq!(seeded_for(7, "/cache/60?text=9", 9), seeded_text(7, 9));
        assert_eq!(seeded_for(7, "/bytes/9?lab=text", 9), seeded_body(7, 9));
    }

    #[test]
    fn origin_form_of_every_target_form() {
        assert_eq!(origin_form("/a?b=1"), ("/a?b=1".into(), false));
        assert_eq!(origin_form("http://h:80/a?b=1"), ("/a?b=1".into(), true));
        assert_eq!(origin_form("HTTP://h"), ("/".into(), true));
        assert_eq!(origin_form("https://h?x=1"), ("/?x=1".into(), true));
        assert_eq!(origin_form("*"), ("*".into(), false));
    }

    /// Sends `request` on a new connection and reads until the origin closes: the head
    /// (as text) and the body.
    async fn exchange(origin: &Handle, request: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(origin.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let body = out.split_off(end + 4);
        (String::from_utf8_lossy(&out).into_owned(), body)
    }

    /// RFC 9112 §3.2.2: a server MUST accept the absolute-form. It is answered like the
    /// origin-form (same route, same hit counter) and recorded as it came.
    #[tokio::test]
    async fn an_absolute_form_target_is_answered_and_recorded_as_such() {
        let origin = start(Config::default()).await.unwrap();
        let addr = origin.addr();
        let (abs, abs_body) = exchange(
            &origin,
            &format!("GET http://{addr}/bytes/10?x=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let (rel, rel_body) = exchange(
            &origin,
            &format!("GET /bytes/10?x=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(abs.starts_with("HTTP/1.1 200"), "{abs}");
        assert!(abs.contains("X-Origin-Hits: 1\r\n") && rel.contains("X-Origin-Hits: 2\r\n"));
        let body = seeded_body(DEFAULT_SEED, 10);
        assert!(abs_body == body && rel_body == body);
        let seen = origin.origin().seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].target, format!("http://{addr}/bytes/10?x=1"));
        assert_eq!(seen[0].path, "/bytes/10?x=1");
        assert!(seen[0].absolute && !seen[1].absolute);
        assert_eq!(
            (seen[0].method.as_str(), seen[0].version),
            ("GET", "HTTP/1.1")
        );
        assert_eq!(origin.origin().hits("/bytes/10?x=1"), 2);
        origin.shutdown().await;
    }

    #[tokio::test]
    async fn hits_lists_the_targets_under_a_prefix_and_does_not_count_itself() {
        let origin = start(Config::default()).await.unwrap();
        for target in ["/etag/a", "/etag/b", "/etag/a", "/bytes/1"] {
            exchange(&origin, &format!("GET {target} HTTP/1.0\r\n\r\n")).await;
        }
        let (_, body) = exchange(&origin, "GET /hits?prefix=/etag/ HTTP/1.0\r\n\r\n").await;
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            "3 requests for 2 targets starting with /etag/\n     2  /etag/a\n     1  /etag/b\n"
        );
        let (_, all) = exchange(&origin, "GET /hits HTTP/1.0\r\n\r\n").await;
        assert!(String::from_utf8(all)
            .unwrap()
            .starts_with("4 requests for 3 targets"));
        origin.shutdown().await;
    }

    /// RFC 9112 §6.1: no Transfer-Encoding in a response to an HTTP/1.0 request; the body
    /// ends at the close instead.
    #[tokio::test]
    async fn an_http_1_0_request_never_gets_a_chunked_body() {
        let origin = start(Config::default()).await.unwrap();
        let (head, body) = exchange(&origin, "GET /chunked/3000 HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(body, seeded_body(DEFAULT_SEED, 3000));
        assert_eq!(origin.origin().seen()[0].version, "HTTP/1.0");
        origin.shutdown().await;
    }
}
