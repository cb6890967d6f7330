//! `client load`: many concurrent keep-alive clients, and what they measured.
//!
//! Each of N clients keeps one connection (through a proxy when given; with several, the
//! clients take them in turn) and sends GET requests one after another until the shared
//! budget — a number of requests or a duration — is spent; a failed connection is
//! re-opened for the next request. With `objects` K, `{i}` in the URL becomes 0, 1, …,
//! K-1, 0, … from one request to the next, over all clients. Latencies
//! go into an HDR histogram (exact percentiles at fixed memory). Every run is bounded and
//! stops by itself.

use crate::{FetchError, Url};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest run `--duration` accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    /// `host:port` of HTTP proxies: client N goes through proxy N mod their number.
    pub proxies: Vec<String>,
    pub clients: usize,
    pub budget: Budget,
    /// How many values `{i}` in the URL takes in turn (1: `{i}` is always 0).
    pub objects: u64,
    /// Draw a live progress bar on stderr (only shown on a terminal).
    pub progress: bool,
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// After this many requests in all.
    Requests(u64),
    /// After this long.
    Duration(Duration),
}

/// What a run measured (also its `--json` form).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub proxies: Vec<String>,
    pub clients: usize,
    pub objects: u64,
    /// Requests that got a response (any status).
    pub requests: u64,
    /// Failures by kind: `connect`, `io`, `status 5xx`, …
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub latency_us: Latency,
}

/// Response latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// What one client task brings back.
struct ClientResult {
    latencies: Histogram<u64>,
    requests: u64,
    errors: BTreeMap<String, u64>,
}

/// Runs the load and reports.
pub async fn load(options: LoadOptions) -> Result<LoadReport, FetchError> {
    // `{i}` is not valid in a URI: parsed as a placeholder that is, replaced per request.
    let url = Url::parse(&options.url.replace("{i}", PLACEHOLDER))?;
    if url.https {
        return Err(FetchError::BadUrl(format!(
            "{} (load supports http:// URLs)",
            options.url
        )));
    }
    let clients = options.clients.max(1);
    let remaining = Arc::new(AtomicU64::new(match options.budget {
        Budget::Requests(n) => n,
        Budget::Duration(_) => u64::MAX,
    }));
    let start = Instant::now();
    let deadline = match options.budget {
        Budget::Duration(d) => Some(start + d.min(MAX_DURATION)),
        Budget::Requests(_) => None,
    };
    let bar = progress_bar(&options);
    let objects = Objects {
        templated: options.url.contains("{i}"),
        count: options.objects.max(1),
        next: AtomicU64::new(0),
    };
    let objects = Arc::new(objects);
    let mut tasks = Vec::with_capacity(clients);
    for n in 0..clients {
        let url = url.clone();
        let proxy = match options.proxies.len() {
            0 => None,
            len => Some(options.proxies[n % len].clone()),
        };
        let remaining = remaining.clone();
        let (bar, objects) = (bar.clone(), objects.clone());
        tasks.push(tokio::spawn(async move {
            run_client(url, proxy, &objects, remaining, deadline, bar).await
        }));
    }
    let ticker = deadline.map(|_| {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(start.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let mut total = new_histogram();
    let mut requests = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let Ok(result) = task.await else {
            *errors.entry("client task failed".into()).or_default() += 1;
            continue;
        };
        let _ = total.add(&result.latencies);
        requests += result.requests;
        for (kind, n) in result.errors {
            *errors.entry(kind).or_default() += n;
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    Ok(LoadReport {
        url: options.url,
        proxies: options.proxies,
        clients,
        objects: objects.count,
        requests,
        errors,
        elapsed_s: elapsed,
        requests_per_s: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        latency_us: Latency {
            p50: total.value_at_quantile(0.50),
            p90: total.value_at_quantile(0.90),
            p99: total.value_at_quantile(0.99),
            max: total.max(),
            mean: total.mean(),
        },
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid histogram bounds")
}

fn progress_bar(options: &LoadOptions) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let (len, template) = match options.budget {
        Budget::Requests(n) => (n, "{bar:40} {pos}/{len} requests, {per_sec}, {elapsed}"),
        Budget::Duration(d) => (d.as_millis() as u64, "{bar:40} {elapsed} of the run"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Takes one request from the budget; false when it is spent.
fn take(remaining: &AtomicU64, deadline: Option<Instant>) -> bool {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return false;
    }
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Where `{i}` was in the URL, in its parsed form.
const PLACEHOLDER: &str = "proxylab-load-object";

/// The URLs the requests take in turn: `{i}` in the URL replaced by 0..count.
struct Objects {
    /// Whether the URL has `{i}` at all.
    templated: bool,
    count: u64,
    next: AtomicU64,
}

impl Objects {
    /// The request-target of the next request, from the parsed URL's `target` (in which
    /// `{i}` is [`PLACEHOLDER`]); borrowed as it is when the URL has no `{i}`.
    fn next_target<'t>(&self, target: &'t str) -> std::borrow::Cow<'t, str> {
        if !self.templated {
            return target.into();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
        target.replace(PLACEHOLDER, &i.to_string()).into()
    }
}

async fn run_client(
    url: Url,
    proxy: Option<String>,
    objects: &Objects,
    remaining: Arc<AtomicU64>,
    deadline: Option<Instant>,
    bar: indicatif::ProgressBar,
) -> ClientResult {
    let mut result = ClientResult {
        latencies: new_histogram(),
        requests: 0,
        errors: BTreeMap::new(),
    };
    let dial_to = proxy.clone().unwrap_or_else(|| url.authority.clone());
    let target = url.target(proxy.is_some());
    let host = url
        .uri
        .authority()
        .map_or(url.authority.clone(), |a| a.to_string());
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while take(&remaining, deadline) {
        let sender = match conn.as_mut() {
            Some(s) if s.is_ready() => s,
            _ => match open(&dial_to).await {
                Ok(s) => conn.insert(s),
                Err(kind) => {
                    *result.errors.entry(kind).or_default() += 1;
                    conn = None;
                    continue;
                }
            },
        };
        let started = Instant::now();
        match request(sender, &objects.next_target(&target), &host).await {
            Ok(status) => {
                let micros = started.elapsed().as_micros().max(1) as u64;
                let _ = result.latencies.record(micros);
                result.requests += 1;
                if status >= 400 {
                    *result
                        .errors
                        .entry(format!("status {}xx", status / 100))
                        .or_default() += 1;
                }
                bar.inc(u64::from(deadline.is_none()));
            }
            Err(kind) => {
                *result.errors.entry(kind).or_default() += 1;
                conn = None;
            }
        }
    }
    result
}

async fn open(addr: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = crate::net::dial(addr)
        .await
        .map_err(|_| "connect".to_string())?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| "connect".to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn request(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &str,
    host: &str,
) -> Result<u16, String> {
    let request = hyper::Request::get(target)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| "io".to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|_| "io".to_string())?;
    Ok(status)
}
