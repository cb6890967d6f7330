//! Forwarding benchmark: N keep-alive clients through the proxy to origin-sim, 100-byte
//! bodies, N in {1, 16, 64, 256}.
//!
//! The proxy runs as its own process (the release binary, built by `make bench`), so its
//! CPU time (from /proc/PID/stat) and memory (VmRSS) are its own; origin-sim and the
//! clients run in this process. Criterion reports requests/s; after each N this prints the
//! proxy's CPU time per request and how many upstream connections were opened after
//! warm-up. At the end it measures the memory of 10,000 idle keep-alive client connections,
//! and the proxy's peak memory while a 2 GiB body goes up and comes back.
//!
//! Run: `make bench` (or `cargo build --release -p proxy && cargo bench --bench forward`).
//! `PROXY_BIN=path` benchmarks another build of the proxy; `PROXY_ARGS="--workers 1"` adds
//! options to its command line; `PROXY_ADDR=IP:PORT PROXY_PIDS=PID,…` measures a proxy
//! that is already running (Squid, Tinyproxy) in the same way.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use proxy::http::wire::{self, Framing, Limits, Reader};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The runtime for origin-sim and the clients (the proxy has its own process).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The proxy under test, as a child process.
struct ProxyProcess {
    /// The proxy we started (None for one started elsewhere, see [`ProxyProcess::external`]).
    child: Option<Child>,
    /// Processes whose CPU time and memory count as the proxy's.
    pids: Vec<u32>,
    addr: SocketAddr,
}

impl ProxyProcess {
    fn spawn(extra: &[&str]) -> ProxyProcess {
        let bin = proxy_binary();
        let mut child = Command::new(&bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--max-clients",
                "20000",
            ])
            .args(extra)
            .args(
                std::env::var("PROXY_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `make bench`)", bin.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("proxy listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from proxy: {line:?}"));
        ProxyProcess {
            pids: vec![child.id()],
            child: Some(child),
            addr,
        }
    }

    /// Another proxy, already running (Squid, Tinyproxy, …), for comparison:
    /// `PROXY_ADDR=127.0.0.1:3128 PROXY_PIDS=1234,1235`.
    fn external() -> Option<ProxyProcess> {
        let addr = std::env::var("PROXY_ADDR")
            .ok()?
            .parse()
            .expect("PROXY_ADDR is IP:PORT");
        let pids = std::env::var("PROXY_PIDS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        Some(ProxyProcess {
            child: None,
            pids,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.pids.first().copied().unwrap_or(0)
    }

    /// User and system (kernel) CPU time consumed so far, apart.
    fn cpu_split(&self) -> (Duration, Duration) {
        let (mut user, mut system) = (0, 0);
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command name (in parentheses): utime is the 12th field, stime the 13th.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
            user += field(11).unwrap_or(0);
            system += field(12).unwrap_or(0);
        }
        // USER_HZ is 100 on Linux.
        (
            Duration::from_millis(user * 10),
            Duration::from_millis(system * 10),
        )
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory it ever had, in bytes.
    fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn proxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROXY_BIN") {
        return path.into();
    }
    // target/release/deps/forward-HASH -> target/release/proxy
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("proxy")
}

/// One keep-alive client connection through the proxy.
struct LoadClient {
    reader: Reader<TcpStream>,
    request: Vec<u8>,
}

impl LoadClient {
    async fn connect(proxy: SocketAddr, url: &str) -> LoadClient {
        let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        LoadClient {
            reader: Reader::new(stream),
            request: format!("GET {url} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
        }
    }

    async fn request(&mut self) {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .await
            .expect("send");
        let head = self
            .reader
            .read_response_head(Limits::default(), None)
            .await
            .expect("response");
        assert_eq!(head.status, 200);
        let framing = wire::response_framing("GET", &head).expect("framing");
        wire::discard_body(&mut self.reader, framing, None)
            .await
            .expect("body");
    }
}

/// Runs `total` requests spread over `clients`, each client sequential on its connection.
async fn run(clients: Vec<LoadClient>, total: u64) -> (Vec<LoadClient>, Duration) {
    let n = clients.len() as u64;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let share = total / n + u64::from((i as u64) < total % n);
            tokio::spawn(async move {
                for _ in 0..share {
                    client.request().await;
                }
                client
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        back.push(t.await.expect("client task"));
    }
    (back, start.elapsed())
}

fn forward(c: &mut Criterion) {
    keep_alive_load(c, "forward_100B", "/bytes/100", &[1, 16, 64, 256]);
}

/// Cache hits: the same, for a response the proxy has stored (`/cache/3600`).
fn cache_hits(c: &mut Criterion) {
    keep_alive_load(c, "cache_hit", "/cache/3600", &[64]);
}

/// N keep-alive clients GET `path` through the proxy; reports requests/s (criterion) and
/// the proxy's CPU per request and new upstream connections (printed).
fn keep_alive_load(c: &mut Criterion, name: &str, path: &str, clients: &[usize]) {
    let rt = runtime();
    let origin = rt
        .block_on(origin_sim::start(origin_sim::Config::default()))
        .expect("origin");
    let proxy = ProxyProcess::external().unwrap_or_else(|| ProxyProcess::spawn(&[]));
    let url = format!("{}{path}", origin.url());
    let requests = AtomicU64::new(0);

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for &n in clients {
        // Warm-up: every client opens its connection, then all run at full load for a while,
        // so the upstream pool grows to the concurrency the measurement will see.
        let clients = rt.block_on(async {
            let mut clients = Vec::with_capacity(n);
            for _ in 0..n {
                clients.push(LoadClient::connect(proxy.addr, &url).await);
            }
            run(clients, 20_000.max(n as u64 * 50)).await.0
        });
        let mut clients = Some(clients);
        let upstream_before = origin.origin().connections();
        let (user_before, system_before) = proxy.cpu_split();
        requests.store(0, Ordering::Relaxed);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let (back, elapsed) = rt.block_on(run(clients.take().expect("clients"), iters));
                clients = Some(back);
                requests.fetch_add(iters, Ordering::Relaxed);
                elapsed
            })
        });
        let done = requests.load(Ordering::Relaxed).max(1);
        let (user, system) = proxy.cpu_split();
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / done as f64;
        let (user, system) = (
            per_request(user.saturating_sub(user_before)),
            per_request(system.saturating_sub(system_before)),
        );
        println!(
            "{name}/{n}: proxy CPU {:.1} µs per request (user {user:.1}, kernel {system:.1}) \
             over {done} requests; {} new upstream connection(s) after warm-up",
            user + system,
            origin.origin().connections() - upstream_before
        );
    }
    group.finish();
    drop(proxy);
    rt.block_on(origin.shutdown());
}

/// Memory per idle keep-alive client connection: RSS of a proxy holding 10,000 of them
/// (each served one request), minus its RSS before they came.
fn idle_memory() {
    const IDLE: usize = 10_000;
    let rt = runtime();
    let origin = rt
        .block_on(origin_sim::start(origin_sim::Config::default()))
        .expect("origin");
    let proxy = ProxyProcess::spawn(&["--idle-timeout", "300s"]);
    let url = format!("{}/bytes/100", origin.url());
    let held = rt.block_on(async {
        // One connection and request first, so the pool and runtime are warm.
        let mut first = LoadClient::connect(proxy.addr, &url).await;
        first.request().await;
        let before = proxy.rss();
        let mut held = vec![first];
        while held.len() < IDLE {
            let batch: Vec<_> = (0..100)
                .map(|_| {
                    let url = url.clone();
                    let addr = proxy.addr;
                    tokio::spawn(async move {
                        let mut c = LoadClient::connect(addr, &url).await;
                        c.request().await;
                        // Keep only the socket: the bench's own buffers are not the proxy's.
                        c.reader.into_parts().0
                    })
                })
                .collect();
            for t in batch {
                held.push(LoadClient {
                    reader: Reader::new(t.await.expect("client")),
                    request: Vec::new(),
                });
            }
        }
        let after = proxy.rss();
        println!(
            "idle keep-alive clients: {IDLE} held; proxy RSS {:.1} MiB -> {:.1} MiB = {:.1} KiB per idle connection",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            after.saturating_sub(before) as f64 / 1024.0 / (IDLE - 1) as f64
        );
        held
    });
    drop(held);
    drop(proxy);
    rt.block_on(origin.shutdown());
}

/// Latencies of `clients` good keep-alive clients making `each` requests apiece.
async fn latencies(addr: SocketAddr, url: &str, clients: usize, each: usize) -> Vec<Duration> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let mut client = LoadClient::connect(addr, &url).await;
                let mut took = Vec::with_capacity(each);
                for _ in 0..each {
                    let start = Instant::now();
                    client.request().await;
                    took.push(start.elapsed());
                }
                took
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * each);
    for t in tasks {
        all.extend(t.await.expect("good client"));
    }
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted
        .get(sorted.len() * 99 / 100)
        .copied()
        .unwrap_or_default()
}

/// Hostile clients (issue 13): 2,000 slowloris connections (a head trickling in), 1,000
/// half-open ones (connected, silent) and 1,000 that send garbage, while 64 good clients
/// keep requesting. Prints the good clients' p99 against a quiet run, the proxy's memory per
/// hostile connection, and how many hostile connections the proxy closed by their deadline
/// (`--header-timeout`, plus the 2 s it lingers to read what a closed client still sends).
fn hostile_soak() {
    const SLOW: usize = 2_000;
    const SILENT: usize = 1_000;
    const GARBAGE: usize = 1_000;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let rt = runtime();
    let origin = rt
        .block_on(origin_sim::start(origin_sim::Config::default()))
        .expect("origin");
    let proxy = ProxyProcess::spawn(&["--header-timeout", "5s"]);
    let url = format!("{}/bytes/100", origin.url());
    rt.block_on(async {
        let quiet = latencies(proxy.addr, &url, 64, 200).await;
        let before = proxy.rss();
        let mut hostile = Vec::with_capacity(SLOW + SILENT + GARBAGE);
        for i in 0..SLOW + SILENT + GARBAGE {
            let mut stream = TcpStream::connect(proxy.addr)
                .await
                .expect("hostile connect");
            if i < SLOW {
                let _ = stream
                    .write_all(format!("GET {url} HTTP/1.1\r\nX-Slow: ").as_bytes())
                    .await;
            } else if i >= SLOW + SILENT {
                // Garbage: binary, or something that starts like a method and is not HTTP.
                let junk: &[u8] = if i % 2 == 0 {
                    b"\x00\xff\x13\x37"
                } else {
                    b"GET \x01\x02 ???\r\n\r\n"
                };
                let _ = stream.write_all(&junk.repeat(64)).await;
            }
            hostile.push((Instant::now(), stream));
        }
        let held = proxy.rss();
        // The slowloris connections trickle a byte every 500 ms while the good clients run.
        let (slow, rest) = hostile.split_at_mut(SLOW);
        let trickle = async {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for (_, s) in slow.iter_mut() {
                    let _ = s.write_all(b"x").await;
                }
            }
        };
        let ((), attacked) = tokio::join!(trickle, latencies(proxy.addr, &url, 64, 200));
        // Every hostile connection should be closed by the proxy by its own deadline: the
        // header timeout from when it was opened, plus the 2 s the proxy lingers reading
        // what a client still sends after the answer, plus a second.
        let mut closed = 0;
        let mut open_by_kind = [0; 3];
        for (i, (at, stream)) in slow.iter_mut().chain(rest.iter_mut()).enumerate() {
            let deadline =
                tokio::time::Instant::from_std(*at + HEADER_TIMEOUT + Duration::from_secs(3));
            let mut sink = Vec::new();
            let read = tokio::io::AsyncReadExt::read_to_end(stream, &mut sink);
            // The end of the stream or a reset (the proxy closed after its 408 or 400 and
            // the client kept writing): closed either way. Only the deadline means open.
            if tokio::time::timeout_at(deadline, read).await.is_ok() {
                closed += 1;
            } else {
                open_by_kind[usize::from(i >= SLOW) + usize::from(i >= SLOW + SILENT)] += 1;
            }
        }
        let total = SLOW + SILENT + GARBAGE;
        println!(
            "hostile soak: {SLOW} slowloris + {SILENT} silent + {GARBAGE} garbage connections; \
             good clients' p99 {:.2} ms quiet, {:.2} ms under attack ({:.2}x); proxy RSS \
             {:.1} -> {:.1} MiB = {:.1} KiB per hostile connection; {closed} of {total} closed \
             by the proxy within --header-timeout ({:?}) + 3 s of their opening (still open: \
             {} slowloris, {} silent, {} garbage)",
            p99(&quiet).as_secs_f64() * 1e3,
            p99(&attacked).as_secs_f64() * 1e3,
            p99(&attacked).as_secs_f64() / p99(&quiet).as_secs_f64().max(1e-9),
            before as f64 / 1048576.0,
            held as f64 / 1048576.0,
            held.saturating_sub(before) as f64 / 1024.0 / total as f64,
            HEADER_TIMEOUT,
            open_by_kind[0],
            open_by_kind[1],
            open_by_kind[2],
        );
    });
    drop(proxy);
    rt.block_on(origin.shutdown());
}

/// A 2 GiB body each way at once (uploaded to origin-sim's /echo, which streams it back)
/// through a fresh proxy: its peak memory must stay flat.
fn large_body() {
    const SIZE: u64 = 2 << 30;
    let rt = runtime();
    let origin = rt
        .block_on(origin_sim::start(origin_sim::Config::default()))
        .expect("origin");
    let proxy = ProxyProcess::spawn(&[]);
    let url = format!("{}/echo", origin.url());
    let (peak_before, elapsed, echoed) = rt.block_on(async {
        let mut warm =
            LoadClient::connect(proxy.addr, &format!("{}/bytes/100", origin.url())).await;
        warm.request().await;
        let peak_before = proxy.peak_rss();
        let stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        let head = format!("POST {url} HTTP/1.1\r\nHost: bench\r\nContent-Length: {SIZE}\r\n\r\n");
        let start = Instant::now();
        let upload = tokio::spawn(async move {
            write.write_all(head.as_bytes()).await.expect("head");
            let block = vec![0x5a_u8; 256 * 1024];
            let mut left = SIZE;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                write.write_all(&block[..n]).await.expect("upload");
                left -= n as u64;
            }
            write
        });
        let mut reader = Reader::new(read);
        let head = reader
            .read_response_head(Limits::default(), None)
            .await
            .expect("response");
        let framing = wire::response_framing("POST", &head).expect("framing");
        let mut sink = tokio::io::sink();
        let copied = wire::copy_body(
            &mut reader,
            framing,
            &mut sink,
            Framing::Close,
            Vec::new(),
            None,
        )
        .await
        .expect("echoed body");
        drop(upload.await.expect("upload task"));
        (peak_before, start.elapsed(), copied.bytes)
    });
    assert_eq!(echoed, SIZE);
    println!(
        "large body: 2 GiB up and 2 GiB back through the proxy in {:.1?} ({:.0} MiB/s each way); \
         proxy peak RSS {:.1} MiB before, {:.1} MiB after",
        elapsed,
        SIZE as f64 / 1048576.0 / elapsed.as_secs_f64(),
        peak_before as f64 / 1048576.0,
        proxy.peak_rss() as f64 / 1048576.0
    );
    drop(proxy);
    rt.block_on(origin.shutdown());
}

/// Tunnel throughput: 16 MiB to origin-sim's echo server and back, directly and through
/// a CONNECT tunnel, in the same run.
fn tunnel(c: &mut Criterion) {
    const SIZE: usize = 16 << 20;
    let rt = runtime();
    let config = origin_sim::Config {
        echo: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..origin_sim::Config::default()
    };
    let origin = rt.block_on(origin_sim::start(config)).expect("origin");
    let echo = origin.echo_addr().expect("echo").to_string();
    let proxy = ProxyProcess::spawn(&["--connect-ports", "any"]);
    let proxy_addr = proxy.addr.to_string();
    let data = vec![0xa5_u8; SIZE];
    let mut group = c.benchmark_group("tunnel_16MiB_echo");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    for (name, via) in [
        ("direct", None),
        ("through_proxy", Some(proxy_addr.as_str())),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let back = rt.block_on(client::echo(&echo, via, &data)).expect("echo");
                assert_eq!(back.len(), SIZE);
            })
        });
    }
    group.finish();
    drop(proxy);
    rt.block_on(origin.shutdown());
}

/// The cost of one cache lookup among 100,000 stored responses (in-process).
fn cache_lookup(c: &mut Criterion) {
    use proxy::cache::{Cache, Entry};
    use proxy::http::wire::{Headers, ResponseHead};
    let cache = Cache::new(1 << 30, 1 << 20);
    let now = std::time::SystemTime::now();
    for i in 0..100_000 {
        let mut head = ResponseHead::new(200, "OK");
        head.headers.push("Cache-Control", "max-age=3600");
        head.headers.push("Content-Length", "100");
        let entry = Entry::new(
            head,
            vec![0u8; 100].into(),
            &Headers::default(),
            (now, now),
            &Default::default(),
        )
        .expect("entry");
        cache.store(&format!("http://127.0.0.1:9000/bytes/{i}"), entry);
    }
    let request = Headers::default();
    let mut i = 0u64;
    c.bench_function("cache_lookup_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % 100_000;
            cache.lookup(&format!("http://127.0.0.1:9000/bytes/{i}"), &request)
        })
    });
}

criterion_group!(benches, forward, cache_hits, cache_lookup, tunnel);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") && std::env::var_os("PROXY_ADDR").is_none() {
        idle_memory();
        large_body();
        hostile_soak();
    }
}
