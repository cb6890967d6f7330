//! Counters for `/metrics` (Prometheus text exposition) and `/stats` (JSON), served on
//! `--admin ADDR` to allowed clients.
//!
//! Takes: one call per finished request and per connection event. Returns: the counters as
//! text. Every counter is a relaxed atomic: a request never waits for a lock to be counted.

use crate::cache::CacheStats;
use crate::request::RequestContext;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "other",
];
/// Status classes; index 0 is "aborted" (no status was sent).
const CLASSES: [&str; 6] = ["aborted", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The proxy's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Also the `[ACTIVE CONNECTIONS]` count the console shows.
    pub connections_active: AtomicUsize,
    pub connections_total: AtomicU64,
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    blocked: AtomicU64,
    denied: AtomicU64,
    /// Requests refused while their head was read (400, 408, 414, 431).
    refused_heads: AtomicU64,
    pub tunnels_active: AtomicI64,
    tunnels_total: AtomicU64,
    /// Requests finished on each runtime worker thread (`worker-N` at index N; index 0 for
    /// any other thread).
    per_worker: Vec<AtomicU64>,
}

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// This thread's worker number (from its name, `worker-N`), 0 for other threads.
fn worker_index() -> usize {
    WORKER.with(|w| {
        if let Some(i) = w.get() {
            return i;
        }
        let i = std::thread::current()
            .name()
            .and_then(|n| n.strip_prefix("worker-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        w.set(Some(i));
        i
    })
}

/// What the metrics read from elsewhere when they are rendered: the cache's size and the
/// upstream pool's idle connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub cache: CacheStats,
    pub upstream_idle: usize,
    /// With `--cache-store`: whether the shared store is connected.
    pub cache_store_up: Option<bool>,
}

/// A JSON number: an integer when the value is one (every counter and gauge is), so that
/// `/stats` says `3`, not `3.0`.
fn number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::json!(v as i64)
    } else {
        serde_json::json!(v)
    }
}

impl Metrics {
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            connections_active: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            requests: Default::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            refused_heads: AtomicU64::new(0),
            tunnels_active: AtomicI64::new(0),
            tunnels_total: AtomicU64::new(0),
            per_worker: (0..=workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts a finished request (or a closed tunnel).
    pub fn record(&self, ctx: &RequestContext) {
        let method = METHODS
            .iter()
            .position(|m| *m == ctx.method)
            .unwrap_or(METHODS.len() - 1);
        let class = match ctx.status {
            100..=599 => usize::from(ctx.status / 100),
            _ => 0,
        };
        self.requests[method][class].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(ctx.bytes_up, Relaxed);
        self.bytes_out
            .fetch_add(ctx.head_down + ctx.bytes_down, Relaxed);
        match ctx.result {
            "TCP_HIT" | "TCP_IMS_HIT" | "TCP_STALE_HIT" => self.cache_hits.fetch_add(1, Relaxed),
            "TCP_MISS" | "TCP_REFRESH_MODIFIED" | "TCP_REFRESH_UNMODIFIED"
                if ctx.method == "GET" || ctx.method == "HEAD" =>
            {
                self.cache_misses.fetch_add(1, Relaxed)
            }
            _ => 0,
        };
        if ctx.blocked_by.is_some() {
            self.blocked.fetch_add(1, Relaxed);
        } else if ctx.status == 403 || ctx.status == 407 {
            self.denied.fetch_add(1, Relaxed);
        }
        if ctx.result == "TCP_TUNNEL" {
            self.tunnels_total.fetch_add(1, Relaxed);
        }
        if ctx.head_refused {
            self.refused_heads.fetch_add(1, Relaxed);
        }
        let worker = worker_index().min(self.per_worker.len() - 1);
        self.per_worker[worker].fetch_add(1, Relaxed);
    }

    /// Every metric as (name, help, type, [(labels, value)]).
    ///
    /// One piece on purpose: it is the table of every metric the proxy exports, each one's
    /// name, help and kind next to where its value comes from, rendered by both `/metrics`
    /// and `/stats`; split up, the table would no longer read as one.
    fn families(&self, gauges: &Gauges) -> Vec<Family> {
        let cache = gauges.cache;
        let gauge = |v: i64| vec![(String::new(), v as f64)];
        let counter = |v: &AtomicU64| vec![(String::new(), v.load(Relaxed) as f64)];
        let mut requests = Vec::new();
        for (m, method) in METHODS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.requests[m][c].load(Relaxed);
                if n > 0 {
                    requests.push((format!("method=\"{method}\",status=\"{class}\""), n as f64));
                }
            }
        }
        let workers = self
            .per_worker
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = if i == 0 {
                    "other".to_string()
                } else {
                    format!("worker-{i}")
                };
                (format!("thread=\"{name}\""), n.load(Relaxed) as f64)
            })
            .collect();
        let mut families = vec![
            Family::new(
                "connections_active",
                "Client connections open now.",
                "gauge",
                gauge(self.connections_active.load(Relaxed) as i64),
            ),
            Family::new(
                "connections_total",
                "Client connections accepted.",
                "counter",
                counter(&self.connections_total),
            ),
            Family::new(
                "requests_total",
                "Requests finished, by method and status class.",
                "counter",
                requests,
            ),
            Family::new(
                "request_bytes_total",
                "Request body bytes received from clients and sent upstream.",
                "counter",
                counter(&self.bytes_in),
            ),
            Family::new(
                "response_bytes_total",
                "Response bytes (heads and bodies) sent to clients.",
                "counter",
                counter(&self.bytes_out),
            ),
            Family::new(
                "cache_hits_total",
                "GET and HEAD requests answered from the cache.",
                "counter",
                counter(&self.cache_hits),
            ),
            Family::new(
                "cache_misses_total",
                "GET and HEAD requests that went upstream.",
                "counter",
                counter(&self.cache_misses),
            ),
            Family::new(
                "cache_entries",
                "Responses stored.",
                "gauge",
                gauge(cache.entries as i64),
            ),
            Family::new(
                "cache_bytes",
                "Bytes stored.",
                "gauge",
                gauge(cache.bytes as i64),
            ),
            Family::new(
                "cache_evictions_total",
                "Stored responses evicted to make room.",
                "counter",
                vec![(String::new(), cache.evictions as f64)],
            ),
            Family::new(
                "blocked_total",
                "Requests blocked by a filtering rule.",
                "counter",
                counter(&self.blocked),
            ),
            Family::new(
                "denied_total",
                "Requests refused by access control or authentication.",
                "counter",
                counter(&self.denied),
            ),
            Family::new(
                "refused_heads_total",
                "Requests refused while their head was read (malformed 400, slow 408, \
                 long target 414, large head 431).",
                "counter",
                counter(&self.refused_heads),
            ),
            Family::new(
                "tunnels_active",
                "CONNECT tunnels open now.",
                "gauge",
                gauge(self.tunnels_active.load(Relaxed)),
            ),
            Family::new(
                "tunnels_total",
                "CONNECT tunnels closed.",
                "counter",
                counter(&self.tunnels_total),
            ),
            Family::new(
                "worker_requests_total",
                "Requests finished on each runtime worker thread.",
                "counter",
                workers,
            ),
            Family::new(
                "upstream_pool_idle",
                "Idle upstream connections in the pool.",
                "gauge",
                gauge(gauges.upstream_idle as i64),
            ),
        ];
        if let Some(up) = gauges.cache_store_up {
            families.push(Family::new(
                "cache_store_up",
                "Whether the shared cache store (--cache-store) is connected: 1 or 0.",
                "gauge",
                gauge(i64::from(up)),
            ));
        }
        families
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        for f in self.families(gauges) {
            let _ = writeln!(out, "# HELP proxylab_{} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE proxylab_{} {}", f.name, f.kind);
            for (labels, value) in &f.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "proxylab_{} {value}", f.name);
                } else {
                    let _ = writeln!(out, "proxylab_{}{{{labels}}} {value}", f.name);
                }
            }
        }
        out
    }

    /// The same figures as one JSON object: `{"name": value}` or, for labelled metrics,
    /// `{"name": {"labels": value}}`.
    pub fn json(&self, gauges: &Gauges) -> String {
        let mut map = serde_json::Map::new();
        for f in self.families(gauges) {
            let value = match f.samples.as_slice() {
                [(labels, v)] if labels.is_empty() => number(*v),
                samples => serde_json::Value::Object(
                    samples
                        .iter()
                        .map(|(l, v)| (l.replace('"', ""), number(*v)))
                        .collect(),
                ),
            };
            map.insert(f.name.to_string(), value);
        }
        serde_json::Value::Object(map).to_string()
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        samples: Vec<(String, f64)>,
    ) -> Family {
        Family {
            name,
            help,
            kind,
            samples,
        }
    }
}
