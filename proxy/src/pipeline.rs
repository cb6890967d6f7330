//! The request pipeline: the one place where the order of the stages is written.
//!
//! Takes: a request head read from a client connection. Returns: whether that connection
//! can carry another request. On the way it parses the target, checks for loops, rewrites
//! the header section, borrows an upstream connection from the pool, streams the body up
//! and the response down, and records what happened in a [`RequestContext`] that ends as
//! one log line (the access log of issue 5 prints the same context).
//!
//! ```text
//! parse target ─▶ loop / Max-Forwards ─▶ rewrite request headers ─▶ upstream (pooled)
//!      │ (origin-form: status page)                                        │
//!      ▼                                                                   ▼
//!  error page ◀──────────── any stage fails ◀──── response: strip hop-by-hop, Via, frame
//!                                   └──────────▶ log line (always)
//! ```

use crate::accesslog::AccessLog;
use crate::auth::Auth;
use crate::cache::{self, Cache, Entry};
use crate::capture::{Capture, TapRead, TapWrite};
use crate::config::{Config, LogFormat};
use crate::error::{error_page, ProxyError};
use crate::forward;
use crate::freshness::{self, CacheControl};
use crate::metrics::Metrics;
use crate::rules::{self, Direction, RuleSet, Rules, Verdict};
use crate::target::{self, Authority, Target};
use crate::upstream::{UpstreamConn, Upstreams};
use crate::wire::{
    self, copy_body, BodyError, Framing, HeadError, Limits, Reader, RequestHead, ResponseHead,
    Version,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;

/// What every connection shares: configuration and the upstream pool.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub cache: Cache,
    /// Set in reverse mode (`--upstream`).
    pub reverse: Option<crate::reverse::Reverse>,
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
}

impl Shared {
    /// `--allow-clients`: whether `peer` may use the proxy (403 if not).
    pub fn admit_client(&self, peer: SocketAddr) -> Result<(), ProxyError> {
        let ip = peer.ip().to_canonical();
        if self.networks.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(ProxyError::Forbidden(format!(
                "{ip} is not allowed to use this proxy (see --allow-clients)"
            )))
        }
    }

    /// The Via entry for a message of `version` (`None` with `--no-via`).
    pub fn via(&self, version: Version) -> Option<&str> {
        self.via[usize::from(version == Version::Http11)].as_deref()
    }

    /// Whether a connection whose client wants keep-alive (or not) may carry another
    /// request: not while the proxy is shutting down.
    fn next(&self, client_keeps_alive: bool) -> Next {
        if client_keeps_alive && !self.draining.load(Ordering::Relaxed) {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// The shared state for a proxy listening on `local_addr`; with `--cache-dir`, the
    /// cache's files are loaded first.
    pub fn new(config: Config, local_addr: SocketAddr) -> std::io::Result<Self> {
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
        let mut cache = Cache::new(config.cache_size, config.cache_max_object);
        if let (Some(dir), true) = (&config.cache_dir, cache.enabled()) {
            let (loaded, count) = cache.with_dir(dir.clone())?;
            tracing::info!("cache: {count} entries loaded from {}", dir.display());
            cache = loaded;
        }
        Ok(Shared {
            local_addr,
            cache,
            reverse: crate::reverse::Reverse::new(&config.upstreams),
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
        })
    }
}

/// One client connection, split so the request body can flow up while the response
/// flows down.
#[derive(Debug)]
pub struct ClientConn {
    pub reader: Reader<TapRead>,
    pub writer: TapWrite,
    pub peer: SocketAddr,
}

/// Whether the client connection may carry another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// Everything known about one request, from arrival to the log line.
#[derive(Debug)]
pub struct RequestContext {
    pub id: u64,
    pub peer: SocketAddr,
    pub started: Instant,
    pub method: String,
    pub target: String,
    pub status: u16,
    /// Request body bytes sent upstream.
    pub bytes_up: u64,
    /// Response body bytes sent to the client.
    pub bytes_down: u64,
    /// The upstream server, once one was chosen.
    pub upstream: Option<Authority>,
    pub upstream_reused: bool,
    pub error: Option<String>,
    /// The client's HTTP version.
    pub version: Version,
    /// The user who authenticated (with `--auth-file`).
    pub user: Option<String>,
    /// What happened, as Squid's result codes name it: `TCP_MISS`, `TCP_HIT`,
    /// `TCP_IMS_HIT` (304 from the cache), `TCP_REFRESH_UNMODIFIED`, `TCP_REFRESH_MODIFIED`,
    /// `TCP_DENIED`, `TCP_TUNNEL`, or `NONE` (answered by the proxy itself).
    pub result: &'static str,
    pub content_type: Option<String>,
    /// Request headers the combined and JSON log formats print (only kept when they do).
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// The rule that blocked the request.
    pub blocked_by: Option<String>,
}

/// Handles one request whose head has been read, writes its response, and logs it.
pub async fn handle(shared: &Shared, conn: &mut ClientConn, head: RequestHead) -> Next {
    let mut ctx = RequestContext {
        id: shared.next_request.fetch_add(1, Ordering::Relaxed),
        peer: conn.peer,
        started: Instant::now(),
        method: head.method.clone(),
        target: head.target.clone(),
        status: 0,
        bytes_up: 0,
        bytes_down: 0,
        upstream: None,
        upstream_reused: false,
        error: None,
        version: head.version,
        user: None,
        result: "NONE",
        content_type: None,
        referer: None,
        user_agent: None,
        blocked_by: None,
    };
    if shared
        .access_log
        .as_ref()
        .is_some_and(|l| matches!(l.format(), LogFormat::Combined | LogFormat::Json))
    {
        let text = |name| {
            head.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        ctx.referer = text("referer");
        ctx.user_agent = text("user-agent");
    }
    let client_version = head.version;
    let routed = match shared.admit_client(conn.peer) {
        Ok(()) => route(shared, conn, head, &mut ctx).await,
        Err(e) => Err(e.into()),
    };
    let next = match routed {
        Ok(next) => next,
        Err(Failure::Answer(e)) => {
            ctx.status = e.status();
            if matches!(
                e,
                ProxyError::Blocked(_) | ProxyError::AuthRequired(_) | ProxyError::Forbidden(_)
            ) {
                ctx.result = "TCP_DENIED";
            }
            ctx.error = Some(e.to_string());
            let (head, body) = e.response(shared.via(Version::Http11));
            if let Ok(sent) = respond(conn, client_version, head, &body, Next::Close).await {
                ctx.bytes_down = sent;
            }
            Next::Close
        }
        Err(Failure::Abort(why)) => {
            ctx.error = Some(why);
            Next::Close
        }
    };
    finish(shared, &ctx);
    next
}

/// How a request failed: with an answer the client can still be sent, or after the
/// response head was already on its way (then the connection can only be cut).
enum Failure {
    Answer(ProxyError),
    Abort(String),
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Answer(e)
    }
}

/// Decides what kind of request this is and sends it down the right path.
async fn route(
    shared: &Shared,
    conn: &mut ClientConn,
    head: RequestHead,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let target = target::parse(&head.method, &head.target).map_err(ProxyError::BadRequest)?;
    let framing = wire::request_framing(&head).map_err(|e| ProxyError::BadRequest(e.into()))?;
    match target {
        Target::Absolute { authority, path } if head.method.eq_ignore_ascii_case("PURGE") => {
            let key = cache::key(&authority, &path);
            purge(shared, conn, &head, key, framing, ctx).await
        }
        Target::Absolute { authority, path } => {
            let rewrites = admit(
                shared,
                &head,
                &authority.host,
                authority.port,
                Some(&path),
                ctx,
            )
            .await?;
            let destination = Destination {
                key: cache::key(&authority, &path),
                upstreams: vec![authority],
                path,
                keep_host: false,
                rewrites,
            };
            forward(shared, conn, head, destination, framing, ctx).await
        }
        Target::Origin(path) if shared.reverse.is_some() => {
            // Reverse mode: the client's Host names the site; an upstream serves it.
            let upstreams = shared
                .reverse
                .as_ref()
                .map(|r| r.order())
                .unwrap_or_default();
            let host = head
                .headers
                .get("host")
                .and_then(|h| std::str::from_utf8(h).ok())
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| upstreams.first().map(|u| u.to_string()).unwrap_or_default());
            let (name, port) = split_host_header(&host);
            let rewrites = admit(shared, &head, name, port, Some(&path), ctx).await?;
            let destination = Destination {
                key: format!("http://{host}{path}"),
                upstreams,
                path,
                keep_host: true,
                rewrites,
            };
            forward(shared, conn, head, destination, framing, ctx).await
        }
        Target::Origin(path) => own_page(conn, &head, &path, framing, ctx).await,
        Target::Asterisk => {
            let mut res = ResponseHead::new(200, "OK");
            res.headers.push("Allow", ALLOWED);
            res.headers.push("Content-Length", "0");
            ctx.status = 200;
            finish_own(conn, &head, framing, res, b"", ctx).await
        }
        Target::AbsoluteHttps => Err(ProxyError::NotImplemented(
            "https:// request-targets (send CONNECT host:443 and speak TLS through the tunnel)"
                .into(),
        )
        .into()),
        Target::Authority(authority) => {
            admit(shared, &head, &authority.host, authority.port, None, ctx).await?;
            connect(shared, conn, &head, authority, ctx).await
        }
    }
}

/// The header rewrites that apply to one request: the rule set it was admitted by (so the
/// whole request sees one set, whatever a reload does meanwhile) and the host they match.
struct Rewrites {
    rules: Arc<RuleSet>,
    host: String,
}

impl Rewrites {
    fn apply(&self, on: Direction, headers: &mut wire::Headers) {
        self.rules.rewrite(on, &self.host, headers);
    }
}

/// Access control for a request to `host:port` (the name the client asked for, never a
/// resolved address): proxy authentication, then the filtering rules. `path` is `None`
/// for CONNECT. Returns the header rewrites for the request, when the rules have any.
async fn admit(
    shared: &Shared,
    head: &RequestHead,
    host: &str,
    port: u16,
    path: Option<&str>,
    ctx: &mut RequestContext,
) -> Result<Option<Rewrites>, Failure> {
    if let Some(auth) = &shared.auth {
        match auth.check(head.headers.get("proxy-authorization")).await {
            Ok(user) => ctx.user = Some(user),
            Err(why) => return Err(ProxyError::AuthRequired(why).into()),
        }
    }
    if shared.rules.path().is_some() {
        let rules = shared.rules.current();
        let url = match path {
            Some(path) => rules::url(host, port, path),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        };
        let request = rules::Request {
            method: &head.method,
            host,
            port,
            url: &url,
        };
        if let Verdict::Block(why) = rules.check(&request) {
            let file = shared
                .rules
                .path()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let why = format!("{file} {why}");
            ctx.blocked_by = Some(why.clone());
            return Err(ProxyError::Blocked(why).into());
        }
        if rules.has_rewrites() {
            return Ok(Some(Rewrites {
                rules,
                host: host.to_string(),
            }));
        }
    }
    Ok(None)
}

/// A Host header value split into lower-case name (no brackets) and port (80 if none).
fn split_host_header(host: &str) -> (&str, u16) {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (name, port.unwrap_or(80));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().unwrap_or(80)),
        None => (host, 80),
    }
}

/// Opens a CONNECT tunnel: port policy, loop check, dial, `200`, then bytes both ways.
async fn connect(
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
    let mut ok = ResponseHead::new(200, "Connection Established");
    if let Some(via) = shared.via(head.version) {
        ok.headers.push("Via", via);
    }
    let mut out = Vec::with_capacity(128);
    ok.write_to(&mut out);
    conn.writer
        .write_all(&out)
        .await
        .map_err(|e| Failure::Abort(format!("client went away: {e}")))?;
    ctx.status = 200;
    ctx.result = "TCP_TUNNEL";
    shared
        .metrics
        .tunnels_active
        .fetch_add(1, Ordering::Relaxed);
    let stats = crate::tunnel::relay(conn, server, config.tunnel_idle_timeout).await;
    shared
        .metrics
        .tunnels_active
        .fetch_sub(1, Ordering::Relaxed);
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

const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE";

/// Forwards an absolute-form request to its origin and relays the response.
/// Where a request goes: the upstreams to try in order (one in forward mode), the path
/// to ask for, its cache key, and whether the client's Host is kept (reverse mode).
struct Destination {
    upstreams: Vec<Authority>,
    path: String,
    key: String,
    keep_host: bool,
    rewrites: Option<Rewrites>,
}

async fn forward(
    shared: &Shared,
    conn: &mut ClientConn,
    mut head: RequestHead,
    destination: Destination,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let Destination {
        upstreams,
        path,
        key,
        keep_host,
        rewrites,
    } = destination;
    let Some(mut authority) = upstreams.first().cloned() else {
        return Err(
            ProxyError::NotImplemented("a request with no upstream to send it to".into()).into(),
        );
    };
    let config = &shared.config;
    if !config.no_via && forward::via_names(&head.headers, &config.via_name) {
        return Err(ProxyError::Loop(format!(
            "the request has already passed through this proxy (its Via names {})",
            config.via_name
        ))
        .into());
    }
    if head.method == "OPTIONS" || head.method == "TRACE" {
        if let Some(0) = forward::max_forwards(&mut head.headers) {
            return answer_max_forwards(conn, head, framing, ctx).await;
        }
    }

    // The cache stage: answer from a stored response if it is fresh enough for this
    // request; otherwise forward, with conditionals when a stale one can be revalidated.
    let mut plan = None;
    // Held until this function returns (response stored or not): then waiters wake.
    let mut _flight = None;
    let cacheable_method = head.method == "GET" || head.method == "HEAD";
    if shared.cache.enabled() && cacheable_method && framing == Framing::Empty {
        let req_cc = request_cache_control(&head.headers);
        let now = SystemTime::now();
        let mut looked = look_up(shared, &key, &head.headers, &req_cc, now);
        let mut collapsed = false;
        // A plain miss: if the same URI is already being fetched, wait for that instead
        // of asking the origin again (request collapsing), then look again.
        if matches!(
            looked,
            Lookup::Forward {
                stored: None,
                pass: false,
                ..
            }
        ) && head.method == "GET"
            && req_cc == CacheControl::default()
        {
            match shared.cache.join_flight(&key) {
                Some(cache::Flight::Leader(guard)) => _flight = Some(guard),
                Some(cache::Flight::Follower(mut done)) => {
                    let _ = tokio::time::timeout(config.upstream_timeout, done.changed()).await;
                    looked = look_up(shared, &key, &head.headers, &req_cc, SystemTime::now());
                    collapsed = true;
                }
                None => {}
            }
        }
        let (stored, fwd) = match looked {
            Lookup::Hit(entry, age) => {
                let status = if collapsed {
                    "proxylab; hit; collapsed"
                } else {
                    "proxylab; hit"
                };
                let (next, sent, bytes) =
                    serve_stored(shared, conn, &head, &entry, age, status).await?;
                ctx.status = sent;
                ctx.bytes_down = bytes;
                ctx.result = if sent == 304 {
                    "TCP_IMS_HIT"
                } else {
                    "TCP_HIT"
                };
                ctx.content_type = content_type_for_log(shared, &entry.head.headers);
                return Ok(next);
            }
            Lookup::Forward { stored, fwd, .. } => (stored, fwd),
        };
        if req_cc.only_if_cached {
            return Err(ProxyError::NotCached(key).into());
        }
        let validate = stored.filter(|e| {
            (e.etag().is_some() || e.head.headers.contains("last-modified"))
                && !has_conditionals(&head.headers)
        });
        plan = Some(CachePlan {
            request: head.headers.clone(),
            stored: validate,
            request_time: now,
            may_store: !req_cc.no_store,
            authorization: head.headers.contains("authorization"),
            fwd,
        });
    }
    ctx.result = match plan.as_ref().and_then(|p| p.stored.as_ref()) {
        Some(_) => "TCP_REFRESH_MODIFIED",
        None => "TCP_MISS",
    };
    let client = ClientWants {
        version: head.version,
        keep_alive: head.wants_keep_alive(),
        method: head.method.clone(),
        key,
        cache: plan,
        rewrites,
    };

    // The request as it goes upstream: origin-form, HTTP/1.1, connection fields removed.
    let mut up = RequestHead {
        method: head.method,
        target: path,
        version: Version::Http11,
        headers: head.headers,
    };
    forward::strip_hop_by_hop(&mut up.headers);
    if !keep_host {
        forward::set_host(&mut up.headers, &authority.host_header());
    }
    if let Some(via) = shared.via(client.version) {
        forward::add_via(&mut up.headers, via);
    }
    forward::forwarded_for(&mut up.headers, config.forwarded_for, conn.peer.ip());
    if let Some(rewrites) = &client.rewrites {
        rewrites.apply(Direction::Request, &mut up.headers);
    }
    if framing == Framing::Chunked {
        up.headers.push("Transfer-Encoding", "chunked");
    }
    if let Some(entry) = client.cache.as_ref().and_then(|p| p.stored.as_ref()) {
        if let Some(etag) = entry.etag() {
            up.headers.push("If-None-Match", etag.to_vec());
        }
        if let Some(modified) = entry.head.headers.get("last-modified") {
            up.headers.push("If-Modified-Since", modified.to_vec());
        }
    }
    let mut wire_head = Vec::with_capacity(512);
    up.write_to(&mut wire_head);

    let mut upstream = checkout_first(shared, &upstreams, &mut authority).await?;
    ctx.upstream = Some(authority.clone());
    ctx.upstream_reused = upstream.reused;

    if framing == Framing::Empty {
        let mut relayed =
            exchange_without_body(shared, conn, &mut upstream, &wire_head, &client, ctx).await;
        if matches!(&relayed, Err(e) if e.retryable && upstream.reused) {
            // The pooled connection had been closed by the server meanwhile (nothing was
            // answered on it): send the request once more, on a fresh connection.
            tracing::debug!(
                "pooled connection to {authority} failed before answering; retrying on a new one"
            );
            upstream = shared.upstreams.connect(&authority).await?;
            ctx.upstream_reused = false;
            relayed =
                exchange_without_body(shared, conn, &mut upstream, &wire_head, &client, ctx).await;
        }
        let relayed = relayed.map_err(|e| e.failure)?;
        if relayed.upstream_reusable {
            shared.upstreams.checkin(upstream);
        }
        return relayed.finish(&mut conn.writer).await;
    }

    // With a body: send it up while the response comes down. Both at once, so that
    // `100 Continue` reaches a client that waits for it, an early answer (say, 413) is
    // not stuck behind a body the server will not read, and a server that streams its
    // response while it reads (origin-sim's /echo) does not deadlock against us.
    let (relayed, sent, bytes_up) = {
        let ClientConn {
            reader: client_rd,
            writer: client_wr,
            ..
        } = conn;
        let UpstreamConn {
            reader: up_rd,
            writer: up_wr,
            authority: up_authority,
            ..
        } = &mut upstream;
        let send = copy_body(
            client_rd,
            framing,
            up_wr,
            framing,
            wire_head,
            Some(config.idle_timeout),
        );
        let relay = relay_response(shared, up_rd, client_wr, up_authority, &client, ctx);
        tokio::pin!(send, relay);
        // `None` while the body is still going up; `Some(true)` once it all went; `Some(false)`
        // when the server stopped reading it (it may still answer).
        let mut sent: Option<bool> = None;
        let mut bytes_up = 0;
        let relayed = loop {
            tokio::select! {
                // Look at the body first: a response that arrives just as the last body bytes
                // leave must not be taken for an early one.
                biased;
                r = &mut send, if sent.is_none() => match r {
                    Ok(c) => { sent = Some(true); bytes_up = c.bytes; }
                    Err(BodyError::Write(_)) => sent = Some(false),
                    Err(e) => return Err(Failure::Abort(format!("request body failed: {e}"))),
                },
                r = &mut relay => break r.map_err(|e| e.failure)?,
            }
        };
        (relayed, sent, bytes_up)
    };
    ctx.bytes_up = bytes_up;
    // A response that ended before its request body did leaves both connections unusable.
    if sent == Some(true) && relayed.upstream_reusable {
        shared.upstreams.checkin(upstream);
    }
    let next = relayed.finish(&mut conn.writer).await?;
    Ok(if sent == Some(true) {
        next
    } else {
        Next::Close
    })
}

/// A connection to the first of `upstreams` that accepts one. Moving on is safe only
/// because nothing was sent yet: a refused connection. `authority` becomes the one used.
async fn checkout_first(
    shared: &Shared,
    upstreams: &[Authority],
    authority: &mut Authority,
) -> Result<UpstreamConn, ProxyError> {
    let mut last = None;
    for candidate in upstreams {
        match shared.upstreams.checkout(candidate).await {
            Ok(conn) => {
                if let Some(reverse) = &shared.reverse {
                    reverse.mark_up(candidate);
                }
                *authority = candidate.clone();
                return Ok(conn);
            }
            Err(e @ ProxyError::Connect { .. }) => {
                if let Some(reverse) = &shared.reverse {
                    reverse.mark_down(candidate);
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ProxyError::NotImplemented("a request with no upstream".into())))
}

/// What the cache holds for a request.
enum Lookup {
    /// Fresh enough for this request: serve it, with this age.
    Hit(Arc<Entry>, Duration),
    /// Go to the origin; `stored` is a response that could be revalidated, `fwd` says why
    /// (for Cache-Status, RFC 9211): nothing stored, stale, or refused by the request.
    Forward {
        stored: Option<Arc<Entry>>,
        fwd: &'static str,
        /// The URI's last response could not be stored: do not wait for other requests.
        pass: bool,
    },
}

fn look_up(
    shared: &Shared,
    key: &str,
    request: &wire::Headers,
    req_cc: &CacheControl,
    now: SystemTime,
) -> Lookup {
    let (stored, pass) = if request.contains("range") {
        (None, true)
    } else {
        shared.cache.lookup_or_pass(key, request)
    };
    let Some(entry) = stored else {
        return Lookup::Forward {
            stored: None,
            fwd: "uri-miss",
            pass,
        };
    };
    let age = entry.age(now);
    let lifetime = entry.facts.lifetime;
    let res_cc = &entry.facts.cache_control;
    if freshness::satisfies_request(lifetime, age, req_cc, res_cc) {
        return Lookup::Hit(entry, age);
    }
    let fwd = if age < lifetime && !res_cc.no_cache {
        "request"
    } else {
        "stale"
    };
    Lookup::Forward {
        stored: Some(entry),
        fwd,
        pass: false,
    }
}

/// `PURGE http://host/path`: removes the stored responses for that URI. Only clients on
/// this machine may purge.
async fn purge(
    shared: &Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    key: String,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    if !conn.peer.ip().is_loopback() {
        return Err(ProxyError::Forbidden(format!(
            "PURGE is allowed only from this machine, not {}",
            conn.peer.ip()
        ))
        .into());
    }
    let removed = shared.cache.invalidate(&key);
    let (status, text) = if removed {
        (200, format!("purged {key}\n"))
    } else {
        (404, format!("{key} was not in the cache\n"))
    };
    ctx.status = status;
    let (mut res, _) = error_page(status, "", None);
    res.headers.set("Content-Length", text.len().to_string());
    finish_own(conn, head, framing, res, text.as_bytes(), ctx).await
}

/// What the client's request said about the response it can take.
struct ClientWants {
    version: Version,
    keep_alive: bool,
    method: String,
    /// The request's cache key (also what an unsafe method invalidates).
    key: String,
    /// Set for GET and HEAD when the cache is on.
    cache: Option<CachePlan>,
    /// The rules' header rewrites for this request, if any.
    rewrites: Option<Rewrites>,
}

/// What the cache stage decided for a request it could not answer itself.
struct CachePlan {
    /// The client's header section (for Vary).
    request: wire::Headers,
    /// A stale stored response being revalidated (conditionals were added upstream).
    stored: Option<Arc<Entry>>,
    request_time: SystemTime,
    /// False when the request said no-store.
    may_store: bool,
    authorization: bool,
    /// Why the request went forward, for Cache-Status (`uri-miss`, `stale`).
    fwd: &'static str,
}

/// The request's Cache-Control; `Pragma: no-cache` counts as `no-cache` when there is no
/// Cache-Control (RFC 9111 §5.4).
fn request_cache_control(headers: &wire::Headers) -> CacheControl {
    let mut cc = CacheControl::parse(headers);
    if !headers.contains("cache-control") && headers.has_token("pragma", "no-cache") {
        cc.no_cache = true;
    }
    cc
}

fn has_conditionals(headers: &wire::Headers) -> bool {
    [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    ]
    .iter()
    .any(|h| headers.contains(h))
}

/// Whether the client's own conditional request is satisfied by `entry` (304 from cache).
fn client_condition_met(request: &wire::Headers, entry: &Entry) -> bool {
    if request.contains("if-none-match") {
        let Some(etag) = entry.etag() else {
            return false;
        };
        let weak = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
        let ours = weak(etag);
        return request
            .tokens("if-none-match")
            .any(|t| t == "*" || weak(t.as_bytes()) == ours);
    }
    // The stored date is parsed only when the client sent one to compare it with.
    let Some(since) = freshness::http_date(request, "if-modified-since") else {
        return false;
    };
    freshness::http_date(&entry.head.headers, "last-modified").is_some_and(|m| m <= since)
}

/// Answers from a stored response: `Age` set, `Cache-Status` added, and a 304 when the
/// client's own conditions are met. Returns what comes next and the status sent.
async fn serve_stored(
    shared: &Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    entry: &Entry,
    age: Duration,
    cache_status: &str,
) -> Result<(Next, u16, u64), Failure> {
    let next = shared.next(head.wants_keep_alive());
    let asked = Asked {
        method: &head.method,
        version: head.version,
        headers: &head.headers,
    };
    let (status, out) = stored_bytes(shared, &asked, entry, age, cache_status, next);
    conn.writer
        .write_all(&out)
        .await
        .map_err(|e| Failure::Abort(format!("client went away: {e}")))?;
    Ok((next, status, out.len() as u64))
}

/// What of a request matters to the answer a stored response gives.
struct Asked<'a> {
    method: &'a str,
    version: Version,
    headers: &'a wire::Headers,
}

/// A stored response as bytes on the wire: the stored header lines replayed as they are,
/// plus Age, Via, Cache-Status, Content-Length and Connection. Returns the status sent.
fn stored_bytes(
    shared: &Shared,
    asked: &Asked<'_>,
    entry: &Entry,
    age: Duration,
    cache_status: &str,
    next: Next,
) -> (u16, Vec<u8>) {
    let not_modified = client_condition_met(asked.headers, entry);
    let send_body = !not_modified && asked.method != "HEAD";
    let body_len = if send_body { entry.body.len() } else { 0 };
    let mut out = Vec::with_capacity(256 + entry.facts.replay.len() + body_len);
    let status = if not_modified { 304 } else { entry.head.status };
    let reason = if not_modified {
        "Not Modified"
    } else {
        entry.head.reason.as_str()
    };
    // Bytes pushed straight into the Vec: the formatting machinery cost more than the
    // rest of building the response (perf, cache-hit bench).
    let mut number = itoa::Buffer::new();
    let line = |out: &mut Vec<u8>, parts: &[&[u8]]| {
        for part in parts {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(b"\r\n");
    };
    line(
        &mut out,
        &[
            b"HTTP/1.1 ",
            number.format(status).as_bytes(),
            b" ",
            reason.as_bytes(),
        ],
    );
    out.extend_from_slice(&entry.facts.replay);
    line(
        &mut out,
        &[b"Age: ", number.format(age.as_secs()).as_bytes()],
    );
    if let Some(via) = shared.via(entry.head.version) {
        line(&mut out, &[b"Via: ", via.as_bytes()]);
    }
    line(&mut out, &[b"Cache-Status: ", cache_status.as_bytes()]);
    if !not_modified {
        line(
            &mut out,
            &[
                b"Content-Length: ",
                number.format(entry.body.len()).as_bytes(),
            ],
        );
    }
    match (next, asked.version) {
        (Next::Close, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (Next::KeepAlive, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (Next::KeepAlive, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(&entry.body);
    }
    (status, out)
}

/// How a relayed response ended.
struct Relayed {
    next: Next,
    upstream_reusable: bool,
    /// The response's last bytes, written to the client only after the upstream
    /// connection is back in the pool (see [`wire::copy_body_but_last_write`]).
    last: Vec<u8>,
}

impl Relayed {
    async fn finish(self, client: &mut TapWrite) -> Result<Next, Failure> {
        if !self.last.is_empty() {
            client
                .write_all(&self.last)
                .await
                .map_err(|e| Failure::Abort(format!("client went away: {e}")))?;
        }
        Ok(self.next)
    }
}

/// An upstream failure, and whether the request may be sent again on a fresh connection
/// (only when the server closed before answering anything).
struct RelayError {
    failure: Failure,
    retryable: bool,
}

impl From<Failure> for RelayError {
    fn from(failure: Failure) -> Self {
        RelayError {
            failure,
            retryable: false,
        }
    }
}

async fn exchange_without_body(
    shared: &Shared,
    conn: &mut ClientConn,
    upstream: &mut UpstreamConn,
    wire_head: &[u8],
    client: &ClientWants,
    ctx: &mut RequestContext,
) -> Result<Relayed, RelayError> {
    if let Err(e) = upstream.writer.write_all(wire_head).await {
        return Err(upstream_head_error(
            &upstream.authority,
            HeadError::Io(e),
            Duration::ZERO,
        ));
    }
    relay_response(
        shared,
        &mut upstream.reader,
        &mut conn.writer,
        &upstream.authority,
        client,
        ctx,
    )
    .await
}

/// Reads the upstream's response and writes it to the client: interim 1xx responses as
/// they come, then the final one with its header section rewritten and its body re-framed
/// for what the client understands.
async fn relay_response(
    shared: &Shared,
    up_rd: &mut Reader<TapRead>,
    client_wr: &mut TapWrite,
    authority: &Authority,
    client: &ClientWants,
    ctx: &mut RequestContext,
) -> Result<Relayed, RelayError> {
    let config = &shared.config;
    let deadline = tokio::time::Instant::now() + config.upstream_timeout;
    let mut res = loop {
        let res = up_rd
            .read_response_head(shared.limits, Some(deadline))
            .await
            .map_err(|e| upstream_head_error(authority, e, config.upstream_timeout))?;
        if res.status == 101 || !(100..=999).contains(&res.status) {
            return Err(Failure::Answer(ProxyError::BadUpstream {
                host: authority.to_string(),
                reason: format!(
                    "unexpected status {} (the proxy asked for no upgrade)",
                    res.status
                ),
            })
            .into());
        }
        if res.status >= 200 {
            break res;
        }
        // An interim response (RFC 9110 §15.2): HTTP/1.0 clients do not understand them.
        if client.version == Version::Http11 {
            let mut interim = res;
            forward::strip_hop_by_hop(&mut interim.headers);
            interim.version = Version::Http11;
            let mut out = Vec::new();
            interim.write_to(&mut out);
            client_wr
                .write_all(&out)
                .await
                .map_err(|e| Failure::Abort(format!("client went away: {e}")))?;
        }
    };
    let from = wire::response_framing(&client.method, &res).map_err(|e| {
        Failure::Answer(ProxyError::BadUpstream {
            host: authority.to_string(),
            reason: e.into(),
        })
    })?;
    ctx.status = res.status;
    let upstream_keeps = res.keeps_alive() && from != Framing::Close;

    forward::strip_hop_by_hop(&mut res.headers);
    // Before the cache stores the response: stored responses carry the rewrites.
    if let Some(rewrites) = &client.rewrites {
        rewrites.apply(Direction::Response, &mut res.headers);
    }
    ctx.content_type = content_type_for_log(shared, &res.headers);
    // An unsafe method that succeeded makes stored responses for its target stale
    // (RFC 9111 §4.4), and those for same-origin Location / Content-Location too.
    if !matches!(client.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE") && res.status < 400 {
        invalidate(shared, &client.key, &res.headers);
    }
    // The cache stage, continued: a 304 to our own conditional request refreshes the
    // stored response, which the client then gets whole.
    if let Some(plan) = &client.cache {
        if let (304, Some(stored)) = (res.status, &plan.stored) {
            wire::discard_body(up_rd, from, Some(config.upstream_timeout))
                .await
                .map_err(|e| Failure::Abort(format!("304 body: {e}")))?;
            let mut head = stored.head.clone();
            head.headers = cache::refresh_headers(&stored.head.headers, &res.headers);
            let refreshed = Entry::assemble(
                head,
                stored.body.clone(),
                plan.request_time,
                SystemTime::now(),
                stored.vary.clone(),
            );
            let entry = shared.cache.store(&client.key, refreshed);
            let age = entry.age(SystemTime::now());
            let status = format!("proxylab; fwd={}; fwd-status=304", plan.fwd);
            let next = shared.next(client.keep_alive);
            let asked = Asked {
                method: &client.method,
                version: client.version,
                headers: &plan.request,
            };
            let (status_code, last) = stored_bytes(shared, &asked, &entry, age, &status, next);
            ctx.status = status_code;
            ctx.result = "TCP_REFRESH_UNMODIFIED";
            ctx.bytes_down = last.len() as u64;
            return Ok(Relayed {
                next,
                upstream_reusable: upstream_keeps,
                last,
            });
        }
    }
    // What to store, if anything: the head as received (before our own additions) and,
    // captured while it streams to the client, the body.
    let mut store = client.cache.as_ref().and_then(|plan| {
        let request = freshness::StoreRequest {
            method: &client.method,
            no_store: !plan.may_store,
            authorization: plan.authorization,
        };
        freshness::storable(&request, res.status, &res.headers).then(|| {
            let capture = wire::Capture::new(shared.cache.max_object());
            (plan, res.clone(), capture)
        })
    });
    if store.is_none() && client.cache.is_some() && client.method == "GET" {
        shared.cache.mark_uncacheable(&client.key);
    }
    if let Some(plan) = &client.cache {
        let stored_too = store.is_some()
            && matches!(from, Framing::Length(n) if n as usize <= shared.cache.max_object())
            || (store.is_some() && from == Framing::Empty);
        let status = format!(
            "proxylab; fwd={}{}",
            plan.fwd,
            if stored_too { "; stored" } else { "" }
        );
        res.headers.push("Cache-Status", status);
    }
    if let Some(via) = shared.via(res.version) {
        forward::add_via(&mut res.headers, via);
    }
    // Chunked and close-delimited bodies go to HTTP/1.1 clients chunked (so the client's
    // connection can stay open), to HTTP/1.0 clients close-delimited.
    let to = match from {
        Framing::Chunked | Framing::Close if client.version == Version::Http11 => {
            res.headers.remove("content-length");
            res.headers.push("Transfer-Encoding", "chunked");
            Framing::Chunked
        }
        Framing::Chunked | Framing::Close => {
            res.headers.remove("content-length");
            Framing::Close
        }
        other => other,
    };
    let next = shared.next(client.keep_alive && to != Framing::Close);
    set_connection(&mut res.headers, client.version, next);
    res.version = Version::Http11;

    let mut out = Vec::with_capacity(512);
    res.write_to(&mut out);
    let head_len = out.len() as u64;
    let copied = wire::copy_body_but_last_write(
        up_rd,
        from,
        client_wr,
        to,
        out,
        Some(config.upstream_timeout),
        store.as_mut().map(|(_, _, capture)| capture),
    )
    .await;
    match copied {
        Ok((c, last)) => {
            ctx.bytes_down = head_len + c.bytes;
            if let Some((plan, head, capture)) = store {
                match capture.into_body() {
                    // Larger than --cache-max-object: not stored, so not worth waiting for.
                    None => shared.cache.mark_uncacheable(&client.key),
                    Some(body) => {
                        let now = SystemTime::now();
                        let request = &plan.request;
                        if let Some(entry) =
                            Entry::new(head, body.into(), request, plan.request_time, now)
                        {
                            shared.cache.store(&client.key, entry);
                        }
                    }
                }
            }
            Ok(Relayed {
                next,
                upstream_reusable: upstream_keeps,
                last,
            })
        }
        Err(e) => Err(Failure::Abort(format!("response body cut off: {e}")).into()),
    }
}

/// Drops stored responses for `key`, and for same-origin `Location` / `Content-Location`.
fn invalidate(shared: &Shared, key: &str, headers: &wire::Headers) {
    shared.cache.invalidate(key);
    let origin_end = key.find("://").map_or(0, |i| i + 3);
    let origin = key[origin_end..]
        .find('/')
        .map_or(key, |slash| &key[..origin_end + slash]);
    for field in ["location", "content-location"] {
        let Some(value) = headers.get(field).and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        let target = if value.starts_with('/') {
            format!("{origin}{value}")
        } else {
            value.to_string()
        };
        if target.starts_with(origin) {
            shared.cache.invalidate(&target);
        }
    }
}

fn upstream_head_error(authority: &Authority, e: HeadError, waited: Duration) -> RelayError {
    let host = authority.to_string();
    let (err, retryable) = match e {
        HeadError::Timeout { .. } => (ProxyError::UpstreamTimeout(host, waited), false),
        HeadError::Closed => (
            ProxyError::BadUpstream {
                host,
                reason: "it closed the connection without answering".into(),
            },
            true,
        ),
        HeadError::Io(io) => (
            ProxyError::BadUpstream {
                host,
                reason: format!("the connection failed ({io})"),
            },
            true,
        ),
        other => (
            ProxyError::BadUpstream {
                host,
                reason: other.to_string(),
            },
            false,
        ),
    };
    RelayError {
        failure: Failure::Answer(err),
        retryable,
    }
}

/// Answers OPTIONS or TRACE whose Max-Forwards reached 0: the proxy is the final recipient.
async fn answer_max_forwards(
    conn: &mut ClientConn,
    head: RequestHead,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    ctx.status = 200;
    if head.method == "OPTIONS" {
        let mut res = ResponseHead::new(200, "OK");
        res.headers.push("Allow", ALLOWED);
        res.headers.push("Content-Length", "0");
        return finish_own(conn, &head, framing, res, b"", ctx).await;
    }
    // TRACE reflects the request as received, minus credentials (RFC 9110 §9.3.8).
    let mut reflected = head.clone();
    for secret in ["authorization", "proxy-authorization", "cookie"] {
        reflected.headers.remove(secret);
    }
    let mut body = Vec::new();
    reflected.write_to(&mut body);
    let mut res = ResponseHead::new(200, "OK");
    res.headers.push("Content-Type", "message/http");
    res.headers.push("Content-Length", body.len().to_string());
    finish_own(conn, &head, framing, res, &body, ctx).await
}

/// The page the proxy serves about itself for origin-form requests.
async fn own_page(
    conn: &mut ClientConn,
    head: &RequestHead,
    path: &str,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let (status, body) = if path == "/" || path.starts_with("/?") {
        (200, STATUS_PAGE.to_string())
    } else {
        (
            404,
            format!(
                "404 Not Found: this is a proxy; it serves only / itself. \
                 Ask for an absolute URL instead (GET http://host{path} HTTP/1.1).\n"
            ),
        )
    };
    let (mut res, _) = error_page(status, "", None);
    res.headers.set("Content-Length", body.len().to_string());
    res.headers.remove("cache-control");
    ctx.status = status;
    finish_own(conn, head, framing, res, body.as_bytes(), ctx).await
}

const STATUS_PAGE: &str = "\
proxylab proxy: a forward HTTP proxy.

Use it by pointing a client at it, for example:
  curl -x http://THIS-ADDRESS http://127.0.0.1:9000/bytes/100
  export http_proxy=http://THIS-ADDRESS

It forwards absolute-form requests (GET http://host/path HTTP/1.1) for every method,
keeps connections alive on both sides, and answers errors with a one-line reason.
";

/// Writes a response the proxy made itself, after reading (and dropping) any request body.
async fn finish_own(
    conn: &mut ClientConn,
    head: &RequestHead,
    framing: Framing,
    res: ResponseHead,
    body: &[u8],
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let drained = wire::discard_body(&mut conn.reader, framing, None)
        .await
        .is_ok();
    let next = if drained && head.wants_keep_alive() {
        Next::KeepAlive
    } else {
        Next::Close
    };
    let body = if head.method == "HEAD" {
        &b""[..]
    } else {
        body
    };
    ctx.bytes_down = respond(conn, head.version, res, body, next)
        .await
        .map_err(|e| Failure::Abort(format!("writing the response failed: {e}")))?;
    Ok(next)
}

/// Writes a complete response the proxy made itself.
pub async fn respond(
    conn: &mut ClientConn,
    client_version: Version,
    mut res: ResponseHead,
    body: &[u8],
    next: Next,
) -> std::io::Result<u64> {
    set_connection(&mut res.headers, client_version, next);
    let mut out = Vec::with_capacity(256 + body.len());
    res.write_to(&mut out);
    out.extend_from_slice(body);
    conn.writer.write_all(&out).await?;
    Ok(out.len() as u64)
}

/// `Connection: close` when the connection ends; `keep-alive` for HTTP/1.0 clients that stay.
fn set_connection(headers: &mut wire::Headers, client_version: Version, next: Next) {
    match (next, client_version) {
        (Next::Close, _) => headers.set("Connection", "close"),
        (Next::KeepAlive, Version::Http10) => headers.set("Connection", "keep-alive"),
        (Next::KeepAlive, Version::Http11) => {}
    }
}

/// A response's Content-Type, kept for the access log (only when there is one).
fn content_type_for_log(shared: &Shared, headers: &wire::Headers) -> Option<String> {
    shared.access_log.as_ref()?;
    headers
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The end of every request: the log line, the access log, the metrics.
pub fn finish(shared: &Shared, ctx: &RequestContext) {
    log(ctx);
    if let Some(access_log) = &shared.access_log {
        access_log.write(ctx);
    }
    shared.metrics.record(ctx);
}

fn log(ctx: &RequestContext) {
    // The elapsed time is read only when a line is written (the macros skip their
    // arguments when their level is off).
    if ctx.method == "CONNECT" && ctx.status == 200 {
        // A tunnel is a connection-long event: worth a line at the default level.
        tracing::info!(
            id = ctx.id,
            client = %ctx.peer,
            "[TUNNEL CLOSED] {} ({} B up, {} B down, {:.1?}){}",
            ctx.target,
            ctx.bytes_up,
            ctx.bytes_down,
            ctx.started.elapsed(),
            ctx.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        return;
    }
    match &ctx.error {
        None => tracing::debug!(
            id = ctx.id,
            client = %ctx.peer,
            reused = ctx.upstream_reused,
            "{} {} -> {} ({} B up, {} B down, {:.1?})",
            ctx.method, ctx.target, ctx.status, ctx.bytes_up, ctx.bytes_down, ctx.started.elapsed()
        ),
        Some(err) => tracing::warn!(
            id = ctx.id,
            client = %ctx.peer,
            "{} {} -> {}: {err} ({:.1?})",
            ctx.method,
            ctx.target,
            if ctx.status == 0 { "aborted".to_string() } else { ctx.status.to_string() },
            ctx.started.elapsed()
        ),
    }
}
