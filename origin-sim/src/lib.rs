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
//! - It speaks HTTP/1.1 by hand (with the proxy's own [`proxy::wire`] layer) so that it can
//!   also break the protocol on purpose: reset mid-body, hang, truncate, malformed status.
//!
//! The routes are listed in [`ROUTES`] (and `origin-sim --help`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let origin = origin_sim::start(origin_sim::Config::default()).await?;
//! println!("GET {}/bytes/100", origin.url());
//! origin.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod routes;

use proxy::wire::{HeadError, Limits, Reader};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub use routes::ROUTES;

/// The seed bodies come from when none is given.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// origin-sim's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP listener binds (port 0 picks one).
    pub http: SocketAddr,
    /// The seed for every generated body.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: DEFAULT_SEED,
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
}

impl Origin {
    pub fn new(seed: u64) -> Self {
        Origin {
            seed,
            hits: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// How many requests `target` (path and query) has received.
    pub fn hits(&self, target: &str) -> u64 {
        self.hits
            .lock()
            .map(|h| h.get(target).copied().unwrap_or(0))
            .unwrap_or(0)
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

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve_http(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn_id = origin.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let origin = origin.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(origin, stream, conn_id, stop).await {
                tracing::debug!("connection {conn_id}: {e}");
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// Whether the connection stays open after a response.
pub(crate) enum After {
    KeepAlive,
    Close,
    /// Close with a TCP reset (RST) instead of a FIN.
    Reset,
}

async fn connection(
    origin: Arc<Origin>,
    stream: TcpStream,
    conn_id: u64,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, writer) = stream.into_split();
    let mut conn = routes::Conn {
        reader: Reader::new(read),
        writer,
    };
    loop {
        let head = tokio::select! {
            h = conn.reader.read_request_head(Limits::default(), None) => h,
            _ = stop.changed() => return Ok(()),
        };
        let head = match head {
            Ok(h) => h,
            Err(HeadError::Closed) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(e) => {
                let msg = format!("origin-sim: bad request: {e}\n");
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                );
                conn.writer.write_all(reply.as_bytes()).await?;
                return Ok(());
            }
        };
        let hits = origin.count_hit(&head.target);
        let exchange = routes::Exchange {
            origin: &origin,
            head,
            hits,
            conn_id,
        };
        match routes::respond(exchange, &mut conn).await? {
            After::KeepAlive => continue,
            After::Close => {
                let _ = conn.writer.shutdown().await;
                return Ok(());
            }
            After::Reset => {
                let (read, _) = conn.reader.into_parts();
                let stream = read.reunite(conn.writer).map_err(io::Error::other)?;
                // Linger 0: closing now sends RST instead of FIN.
                stream.set_zero_linger()?;
                return Ok(());
            }
        }
    }
}

/// An origin-sim running in this process (for tests, benchmarks and labs).
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    origin: Arc<Origin>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Handle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters: hits per path, connections, requests.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// Stops accepting and closes idle connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds `config.http` and serves on the current runtime.
pub async fn start(config: Config) -> io::Result<Handle> {
    let listener = TcpListener::bind(config.http).await?;
    let addr = listener.local_addr()?;
    let origin = Arc::new(Origin::new(config.seed));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_http(listener, origin.clone(), async {
        let _ = stopped.await;
    }));
    Ok(Handle {
        addr,
        origin,
        stop: Some(stop),
        task,
    })
}

/// A deterministic byte generator (SplitMix64): the same seed and length always give the
/// same bytes, so tests can check every byte a proxy delivered.
#[derive(Debug, Clone)]
pub struct SeededBytes {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl SeededBytes {
    /// The stream for a body of `len` bytes under `seed`.
    pub fn new(seed: u64, len: u64) -> Self {
        SeededBytes {
            state: seed ^ len.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            word: [0; 8],
            used: 8,
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
        }
    }
}

/// The body `/bytes/{len}` (and `/chunked`, `/close`, `/drip`, `/truncate`) sends.
pub fn seeded_body(seed: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0; len as usize];
    SeededBytes::new(seed, len).fill(&mut out);
    out
}
