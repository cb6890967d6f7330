//! The request pipeline: the one place where the order of the stages is written.
//!
//! Takes: a request head read from a client connection. Returns: whether that connection
//! can carry another request. Each stage is a module with a small interface; this file
//! only says which comes when, and what each one's answer means for the next:
//!
//! ```text
//! handle ─▶ admit_client (policy) ─▶ route: what does the target name?
//!             │
//!             ├─ PURGE http://…          ─▶ cache::stage::purge
//!             ├─ http://host/path        ─▶ policy::admit ─▶ forward
//!             ├─ /path (reverse mode)    ─▶ policy::admit ─▶ forward
//!             ├─ /path, *                ─▶ http::own (the proxy answers itself)
//!             └─ CONNECT host:port       ─▶ policy::admit ─▶ http::tunnel::open
//!
//! forward ─▶ loop check, Max-Forwards ─▶ cache::stage::consult (a hit ends here;
//!            a stale-while-revalidate hit also starts cache::refresh in the background)
//!         ─▶ upstream request head (http::forward) ─▶ upstream connection (pooled)
//!         ─▶ http::relay::exchange (body up, response down; the cache stage stores)
//!
//! any stage fails ─▶ error page (error) ─▶ observe::record: log line, access log, metrics
//! ```

use crate::cache::{self, stage::Consulted};
use crate::conn::{self, ClientConn, Next};
use crate::error::ProxyError;
use crate::http::relay::{self, Exchange};
use crate::http::target::{self, Authority, Target};
use crate::http::wire::{self, Framing, RequestHead, Version};
use crate::http::{forward, own, tunnel};
use crate::observe;
use crate::policy::{self, rules::Direction, Rewrites};
use crate::request::{Failure, RequestContext, Wants};
use crate::shared::Shared;
use std::borrow::Cow;

/// Handles one request whose head has been read, writes its response, and logs it.
pub async fn handle(shared: &Shared, conn: &mut ClientConn, head: RequestHead) -> Next {
    let keep_headers = shared
        .access_log
        .as_ref()
        .is_some_and(|l| l.wants_headers());
    let mut ctx = RequestContext::new(shared.next_request_id(), conn.peer, &head, keep_headers);
    let client_version = head.version;
    let keeps_alive = head.wants_keep_alive();
    let framing = wire::request_framing(&head);
    let routed = match shared.admit_client(conn.peer) {
        Ok(()) => route(shared, conn, head, framing, &mut ctx).await,
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
            // A 407 keeps the connection when the request can be read whole, so that the
            // client's second, authenticated try follows on it (curl --proxy-anyauth).
            let next = match (&e, framing) {
                (ProxyError::AuthRequired(_), Ok(framing)) if keeps_alive => {
                    read_whole(shared, conn, framing).await
                }
                _ => Next::Close,
            };
            let (head, body) = e.response(shared.via(Version::Http11));
            if let Ok(sent) = conn::respond(conn, client_version, head, &body, next).await {
                ctx.sent(sent);
            }
            next
        }
        Err(Failure::Abort(why)) => {
            ctx.error = Some(why);
            Next::Close
        }
    };
    observe::record(shared.access_log.as_ref(), &shared.metrics, &ctx);
    next
}

/// Decides what kind of request this is and sends it down the right path.
async fn route(
    shared: &Shared,
    conn: &mut ClientConn,
    head: RequestHead,
    framing: Result<Framing, &'static str>,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let target = target::parse(&head.method, &head.target).map_err(ProxyError::BadRequest)?;
    let framing = framing.map_err(|e| ProxyError::BadRequest(e.into()))?;
    let auth = shared.auth.as_ref();
    match target {
        Target::Absolute { authority, path } if head.method.eq_ignore_ascii_case("PURGE") => {
            let key = cache::key(&authority, &path);
            cache::stage::purge(shared, conn, &head, key, framing, ctx).await
        }
        Target::Absolute { authority, path } => {
            let (host, port) = (&authority.host, authority.port);
            let rewrites =
                policy::admit(auth, &shared.rules, &head, host, port, Some(&path), ctx).await?;
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
            let (name, port) = target::split_host_header(&host);
            let rewrites =
                policy::admit(auth, &shared.rules, &head, name, port, Some(&path), ctx).await?;
            let destination = Destination {
                key: format!("http://{host}{path}"),
                upstreams,
                path,
                keep_host: true,
                rewrites,
            };
            forward(shared, conn, head, destination, framing, ctx).await
        }
        Target::Origin(path) => own::status_page(conn, &head, &path, framing, ctx).await,
        Target::Asterisk => own::options(conn, &head, framing, ctx).await,
        Target::AbsoluteHttps => Err(ProxyError::NotImplemented(
            "https:// request-targets (send CONNECT host:443 and speak TLS through the tunnel)"
                .into(),
        )
        .into()),
        Target::Authority(authority) => {
            let (host, port) = (&authority.host, authority.port);
            policy::admit(auth, &shared.rules, &head, host, port, None, ctx).await?;
            tunnel::open(shared, conn, &head, authority, ctx).await
        }
    }
}

/// Reads and drops a refused request's body, if it is small enough to be worth it, so the
/// connection can carry the next request; says whether it can.
async fn read_whole(shared: &Shared, conn: &mut ClientConn, framing: Framing) -> Next {
    /// Larger bodies are not read for nothing: the connection closes instead.
    const DRAIN_AT_MOST: u64 = 64 * 1024;
    match framing {
        Framing::Empty => shared.next(true),
        Framing::Length(n) if n <= DRAIN_AT_MOST => {
            let idle = Some(shared.config.idle_timeout);
            match wire::discard_body(&mut conn.reader, framing, idle).await {
                Ok(_) => shared.next(true),
                Err(_) => Next::Close,
            }
        }
        _ => Next::Close,
    }
}

/// Where a request goes: the upstreams to try in order (one in forward mode), the path
/// to ask for, its cache key, whether the client's Host is kept (reverse mode), and the
/// header rewrites the rules hold for it.
struct Destination {
    upstreams: Vec<Authority>,
    path: String,
    key: String,
    keep_host: bool,
    rewrites: Option<Rewrites>,
}

/// Forwards a request to its origin (or answers it from the cache) and relays the response.
async fn forward(
    shared: &Shared,
    conn: &mut ClientConn,
    mut head: RequestHead,
    destination: Destination,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let Some(first) = destination.upstreams.first() else {
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
    if (head.method == "OPTIONS" || head.method == "TRACE")
        && forward::max_forwards(&mut head.headers) == Some(0)
    {
        return own::max_forwards(conn, head, framing, ctx).await;
    }
    let key = destination.key;
    let plan = match cache::stage::consult(shared, conn, &head, &key, framing, ctx).await? {
        Consulted::Answered(next) => return Ok(next),
        Consulted::Refreshing(next, refresh) => {
            // The client has its (stale) answer; the revalidation goes up as its request
            // would have.
            let ex = Exchange {
                wants: Wants {
                    version: head.version,
                    keep_alive: false,
                    method: head.method.clone(),
                    key,
                },
                plan: None,
                rewrites: destination.rewrites,
            };
            let host = (!destination.keep_host).then_some(first);
            let up = upstream_head(shared, conn, head, destination.path, host, framing, &ex);
            cache::refresh::start(shared, refresh, up, destination.upstreams, ex.rewrites);
            return Ok(next);
        }
        Consulted::Forward(plan) => plan,
    };
    ctx.result = match plan.as_ref().is_some_and(|p| p.revalidating()) {
        true => "TCP_REFRESH_MODIFIED",
        false => "TCP_MISS",
    };
    let ex = Exchange {
        wants: Wants {
            version: head.version,
            keep_alive: head.wants_keep_alive(),
            method: head.method.clone(),
            key,
        },
        plan,
        rewrites: destination.rewrites,
    };
    // In forward mode, a GET or HEAD goes through a parent proxy when there are some
    // (`--parent`): the one its URL hashes to, in absolute-form.
    let parents = shared
        .parents
        .as_ref()
        .filter(|_| !destination.keep_host && framing == Framing::Empty)
        .filter(|_| ex.wants.method == "GET" || ex.wants.method == "HEAD");
    let (target, candidates, health) = match parents {
        Some(parents) => {
            let order = parents.order(&ex.wants.key);
            let target = ex.wants.key.clone();
            (target, Cow::Owned(order), Some(&parents.health))
        }
        None => {
            let health = shared.reverse.as_ref().map(|r| &r.health);
            let upstreams = Cow::Borrowed(destination.upstreams.as_slice());
            (destination.path, upstreams, health)
        }
    };
    let host = (!destination.keep_host).then_some(first);
    let up = upstream_head(shared, conn, head, target, host, framing, &ex);
    let mut wire_head = Vec::with_capacity(512);
    up.write_to(&mut wire_head);

    let relayed = match shared.upstreams.checkout_first(&candidates, health).await {
        Ok(upstream) => {
            ctx.upstream = Some(upstream.authority.clone());
            ctx.upstream_peer = Some(upstream.peer);
            ctx.upstream_reused = upstream.reused;
            relay::exchange(shared, conn, upstream, wire_head, framing, &ex, ctx).await
        }
        Err(e) => Err(e.into()),
    };
    // The origin failed before answering: the cache stage may have a stale stand-in.
    match relayed {
        Err(Failure::Answer(e)) if e.origin_failed() => {
            let plan = ex.plan.as_ref();
            cache::stage::when_origin_fails(shared, conn, plan, &ex.wants, e, ctx).await
        }
        other => other,
    }
}

/// The request as it goes upstream: origin-form, HTTP/1.1, connection fields removed,
/// `Host` set to `host` (unless reverse mode keeps the client's), `Via` and
/// `X-Forwarded-For` added, the rules' rewrites applied, the cache's conditionals added.
fn upstream_head(
    shared: &Shared,
    conn: &ClientConn,
    head: RequestHead,
    path: String,
    host: Option<&Authority>,
    framing: Framing,
    ex: &Exchange<'_>,
) -> RequestHead {
    let mut up = RequestHead {
        method: head.method,
        target: path,
        version: Version::Http11,
        headers: head.headers,
    };
    forward::strip_hop_by_hop(&mut up.headers);
    if let Some(host) = host {
        forward::set_host(&mut up.headers, &host.host_header());
    }
    if let Some(via) = shared.via(ex.wants.version) {
        forward::add_via(&mut up.headers, via);
    }
    forward::forwarded_for(&mut up.headers, shared.config.forwarded_for, conn.peer.ip());
    if let Some(rewrites) = &ex.rewrites {
        rewrites.apply(Direction::Request, &mut up.headers);
    }
    match framing {
        Framing::Chunked => up.headers.push("Transfer-Encoding", "chunked"),
        Framing::Length(n) => forward::single_content_length(&mut up.headers, n),
        Framing::Empty if up.headers.contains("content-length") => {
            forward::single_content_length(&mut up.headers, 0)
        }
        Framing::Empty | Framing::Close => {}
    }
    if let Some(plan) = &ex.plan {
        plan.add_conditionals(&mut up.headers);
    }
    up
}
