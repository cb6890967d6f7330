//! Helpers every test module uses.

use proxy::http::wire::{self, Reader, ResponseHead};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An origin-sim and a proxy, both in this process, on free loopback ports.
pub struct Bench {
    pub origin: origin_sim::Handle,
    pub proxy: proxy::Handle,
}

impl Bench {
    pub async fn start() -> Bench {
        Bench::with(|_| {}).await
    }

    /// Starts with a proxy configuration changed by `tweak`.
    pub async fn with(tweak: impl FnOnce(&mut proxy::Config)) -> Bench {
        let origin = origin_sim::start(origin_sim::Config::default())
            .await
            .expect("origin");
        let mut config = proxy::Config::for_tests();
        tweak(&mut config);
        let proxy = proxy::start(config).await.expect("proxy");
        Bench { origin, proxy }
    }

    /// Starts with the proxy writing its access log, in `format`, to `access.log` in a new
    /// temporary folder (removed when the returned guard is dropped); `tweak` sets the rest.
    pub async fn with_access_log(
        format: proxy::config::LogFormat,
        tweak: impl FnOnce(&mut proxy::Config),
    ) -> (Bench, std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let log = dir.path().join("access.log");
        let bench = Bench::with(|c| {
            c.access_log = Some(log.clone());
            c.log_format = format;
            tweak(c);
        })
        .await;
        (bench, log, dir)
    }

    /// An absolute URL on the origin, e.g. `url("/bytes/10")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin.url())
    }

    pub fn hits(&self, path: &str) -> u64 {
        self.origin.origin().hits(path)
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.proxy.addr()).await
    }

    pub async fn stop(self) {
        self.proxy.shutdown().await.expect("proxy shutdown");
        self.origin.shutdown().await;
    }
}

/// A raw HTTP/1 client connection: writes exactly the bytes a test gives it and parses
/// what comes back, so tests can send what no well-behaved client library would.
pub struct Client {
    pub reader: Reader<TcpStream>,
}

/// A response as a client saw it.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response as text with the given header values replaced, for snapshots.
    pub fn redacted(&self, redact: &[&str]) -> String {
        let mut out = format!(
            "{} {} {}\n",
            self.head.version.as_str(),
            self.head.status,
            self.head.reason
        );
        for h in &self.head.headers.0 {
            let value = if redact.iter().any(|r| h.name.eq_ignore_ascii_case(r)) {
                "[redacted]".to_string()
            } else {
                String::from_utf8_lossy(&h.value).into_owned()
            };
            out.push_str(&format!("{}: {value}\n", h.name));
        }
        out.push('\n');
        out.push_str(&self.text());
        out
    }
}

/// How long any single exchange in a test may take before the test fails (not a sleep:
/// a bound on waiting, so a broken proxy fails the test instead of hanging it).
pub const DEADLINE: Duration = Duration::from_secs(20);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            reader: Reader::new(stream),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.reader
            .get_mut()
            .write_all(bytes.as_ref())
            .await
            .expect("write request");
    }

    /// Reads one response to a request with `method` (HEAD responses have no body).
    pub async fn read(&mut self, method: &str) -> Response {
        tokio::time::timeout(DEADLINE, self.try_read(method))
            .await
            .expect("response within the deadline")
            .expect("a complete response")
    }

    pub async fn try_read(&mut self, method: &str) -> Result<Response, String> {
        let (head, body) = wire::read_response(&mut self.reader, method).await?;
        Ok(Response { head, body })
    }

    /// Sends `GET url` (absolute-form) and reads the response.
    pub async fn get(&mut self, url: &str) -> Response {
        self.send(format!("GET {url} HTTP/1.1\r\nHost: ignored\r\n\r\n"))
            .await;
        self.read("GET").await
    }

    /// Whether the proxy has closed this connection (reads to end, within the deadline).
    pub async fn closed(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(DEADLINE, self.reader.get_mut().read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }
}

/// The `Authority` (as `--upstream` and `--parent` take it) of a server on `addr`.
pub fn authority(addr: SocketAddr) -> proxy::http::target::Authority {
    proxy::http::target::Authority {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// One GET of `path` from the proxy's `--admin` listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Response {
    let mut client = Client::connect(addr).await;
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
        .await;
    client.read("GET").await
}

/// One request through the proxy on a fresh connection.
pub async fn get(proxy: &proxy::Handle, url: &str) -> Response {
    Client::connect(proxy.addr()).await.get(url).await
}

/// Waits until `check` holds, polling with a deadline (never a fixed sleep).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Like [`eventually`], for a check that has to talk to a server.
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes `text` to `path` the way an editor or `proxy block` does: a temporary file in
/// the same directory, renamed over the old one.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write temporary file");
    std::fs::rename(&tmp, path).expect("rename over the file");
}

/// A raw origin: keeps every byte each connection sends it and answers each request head
/// it sees (the body, if any, is not waited for) with the next of `answers`, the last one
/// again once they run out; with none, it never answers.
pub struct Recorder {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// How many connections the proxy has closed.
    closed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    pub async fn start(answers: &'static [&'static str]) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (all, ended) = (received.clone(), closed.clone());
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let conn = {
                    let mut all = all.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (all, ended, answered) = (all.clone(), ended.clone(), answered.clone());
                tokio::spawn(async move {
                    let mut heads_answered = 0;
                    let mut chunk = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                        let heads = {
                            let mut all = all.lock().unwrap();
                            all[conn].extend_from_slice(&chunk[..n]);
                            all[conn].windows(4).filter(|w| w == b"\r\n\r\n").count()
                        };
                        while !answers.is_empty() && heads_answered < heads {
                            heads_answered += 1;
                            let i = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let answer = answers[i.min(answers.len() - 1)];
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                    }
                    ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Recorder {
            addr,
            received,
            closed,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn closed(&self) -> usize {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything received, per connection, as text.
    pub fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }
}
