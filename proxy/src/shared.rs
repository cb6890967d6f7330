//! What every connection shares: the configuration, the cache, the upstream pool, the
//! rules, and the observers. Built once at start ([`Shared::new`]); every stage reads it.

use crate::cache::freshness::Targeting;
use crate::cache::remote::Remote;
use crate::cache::Cache;
use crate::config::Config;
use crate::conn::Next;
use crate::error::ProxyError;
use crate::http::parent::Parents;
use crate::http::reverse::Reverse;
use crate::http::upstream::Upstreams;
use crate::http::wire::{Headers, Limits, Version};
use crate::observe::accesslog::AccessLog;
use crate::observe::capture::Capture;
use crate::observe::metrics::Metrics;
use crate::policy::auth::Auth;
use crate::policy::rules::Rules;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// What every connection shares: configuration and the upstream pool.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub cache: Cache,
    /// Set in reverse mode (`--upstream`).
    pub reverse: Option<Reverse>,
    /// Set with `--parent`.
    pub parents: Option<Parents>,
    /// The address the proxy listens on (a CONNECT there would loop).
    pub local_addr: SocketAddr,
    pub upstreams: Upstreams,
    pub limits: Limits,
    /// Set on shutdown: responses then close their connections.
    pub draining: AtomicBool,
    next_request: AtomicU64,
    /// The Via entries this proxy adds for HTTP/1.0 and HTTP/1.1 messages, built once.
    via: [Option<String>; 2],
    /// Filtering rules (`--rules`), swapped whole on reload.
    pub rules: Arc<Rules>,
    /// Clients allowed to use the proxy (`--allow-clients`).
    pub networks: Vec<ipnet::IpNet>,
    pub auth: Option<Arc<Auth>>,
    pub access_log: Option<AccessLog>,
    pub metrics: Metrics,
    /// `--pcap`: every connection's bytes, as frames.
    pub capture: Option<Arc<Capture>>,
    /// Itself, for work that outlives a request (a background revalidation).
    me: Weak<Shared>,
}

impl Shared {
    /// The shared state itself, for a task that outlives the request that starts it.
    pub fn arc(&self) -> Option<Arc<Shared>> {
        self.me.upgrade()
    }

    /// A number for the next request, unique in this process (the log lines' `id`).
    pub fn next_request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// A response's Content-Type, kept for the access log (only when there is one).
    pub fn content_type_for_log(&self, headers: &Headers) -> Option<String> {
        self.access_log.as_ref()?;
        headers
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// `--allow-clients`: whether `peer` may use the proxy (403 if not).
    pub fn admit_client(&self, peer: SocketAddr) -> Result<(), ProxyError> {
        crate::policy::admit_client(&self.networks, peer)
    }

    /// The Via entry for a message of `version` (`None` with `--no-via`).
    pub fn via(&self, version: Version) -> Option<&str> {
        self.via[usize::from(version == Version::Http11)].as_deref()
    }

    /// Whether a connection whose client wants keep-alive (or not) may carry another
    /// request: not while the proxy is shutting down.
    pub fn next(&self, client_keeps_alive: bool) -> Next {
        if client_keeps_alive && !self.draining.load(Ordering::Relaxed) {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// The shared state for a proxy listening on `local_addr`; with `--cache-dir`, the
    /// cache's files are loaded first.
    pub fn new(config: Config, local_addr: SocketAddr) -> std::io::Result<Arc<Self>> {
        let rules = match &config.rules {
            Some(path) => {
                let rules = Rules::load(path).map_err(|e| {
                    std::io::Error::other(format!("rules: {}: {e}", path.display()))
                })?;
                tracing::info!("rules: {}: {}", path.display(), rules.current().summary());
                Arc::new(rules)
            }
            None => Arc::new(Rules::none()),
        };
        let auth = match &config.auth_file {
            Some(path) => Some(Arc::new(Auth::load(path).map_err(std::io::Error::other)?)),
            None => None,
        };
        let access_log = match &config.access_log {
            Some(path) => Some(AccessLog::open(path, config.log_format).map_err(|e| {
                std::io::Error::other(format!("access log {}: {e}", path.display()))
            })?),
            None => None,
        };
        let capture = match &config.pcap {
            Some(path) => Some(
                Capture::create(path, config.pcap_max)
                    .map_err(|e| std::io::Error::other(format!("pcap {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let reverse = !config.upstreams.is_empty();
        let mut cache =
            Cache::new(config.cache_size, config.cache_max_object).with_targeting(Targeting::new(
                &config.targeted_cache_control,
                reverse && config.cache_size > 0,
            ));
        if let (Some(url), true) = (&config.cache_store, cache.enabled()) {
            let remote = Remote::new(url, config.cache_store_lock, cache.targeting().clone())
                .map_err(std::io::Error::other)?;
            cache = cache.with_remote(Arc::new(remote));
        }
        if let (Some(dir), true) = (&config.cache_dir, cache.enabled()) {
            let (loaded, count) = cache.with_dir(dir.clone())?;
            tracing::info!("cache: {count} entries loaded from {}", dir.display());
            cache = loaded;
        }
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            local_addr,
            cache,
            reverse: Reverse::new(&config.upstreams),
            parents: Parents::new(&config.parents),
            upstreams: Upstreams::new(&config, capture.clone()),
            limits: Limits::default(),
            draining: AtomicBool::new(false),
            via: [
                config.via_entry(Version::Http10),
                config.via_entry(Version::Http11),
            ],
            rules,
            networks: config.client_networks(),
            auth,
            access_log,
            metrics: Metrics::new(workers),
            capture,
            config,
            next_request: AtomicU64::new(1),
        });
        if let Some(remote) = shared.cache.remote() {
            remote.start(Arc::downgrade(&shared), |shared: &Shared, key: &str| {
                shared.cache.invalidate_here(key);
            });
        }
        Ok(shared)
    }
}
