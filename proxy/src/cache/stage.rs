//! The cache stage of the pipeline (RFC 9111): the rules that decide when the cache
//! answers, what goes to the origin, and what is stored.
//!
//! - Before forwarding, [`consult`]: a stored response fresh enough for this request is
//!   served at once (with `Age` and `Cache-Status`, and a 304 when the client's own
//!   conditionals hold); a plain miss for a URI already being fetched waits for that
//!   fetch (request collapsing); otherwise a [`CachePlan`] goes forward with the request,
//!   carrying the stale response to revalidate, if any ([`CachePlan::add_conditionals`]).
//! - When the response head arrives: a 304 to our own conditionals refreshes the stored
//!   response and answers from it ([`revalidated`]); otherwise [`storing`] decides whether
//!   to keep the response, and [`Storing::finish`] stores the body captured on the way.
//! - An unsafe method that succeeded invalidates ([`invalidate`]); `PURGE` removes ([`purge`]).

use super::entry::CONDITIONAL_FIELDS;
use super::freshness::{self, CacheControl};
use super::partial::Partial;
use super::{Cache, Entry, Flight, FlightGuard};
use crate::conn::{ClientConn, Next, Sent};
use crate::error::{error_page, ProxyError};
use crate::http::own;
use crate::http::range::{self, Part};
use crate::http::target::{self, Target};
use crate::http::wire::{self, Framing, Headers, Reader, RequestHead, ResponseHead, Version};
use crate::observe::capture::TapRead;
use crate::request::{Failure, RequestContext, Wants};
use crate::shared::Shared;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// What the cache stage did with a request.
#[derive(Debug)]
pub enum Consulted<'s> {
    /// The cache answered it: the request is over.
    Answered(Next),
    /// The cache answered it with a stale response (stale-while-revalidate): the request
    /// is over for the client; the stored response is to be revalidated in the background
    /// ([`super::refresh::start`], which must be called: it ends the claim on the URI).
    Refreshing(Next, super::refresh::Refresh),
    /// It goes to the origin, with the plan for what comes back (`None` when the cache is
    /// off or the request is not a GET or HEAD without a body).
    Forward(Option<CachePlan<'s>>),
}

/// The cache stage before forwarding: answer from a stored response if it is fresh enough
/// for this request; otherwise plan the request forward, with conditionals when a stale
/// stored response can be revalidated.
pub async fn consult<'s>(
    shared: &'s Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    key: &str,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Consulted<'s>, Failure> {
    let cacheable_method = head.method == "GET" || head.method == "HEAD";
    if !(shared.cache.enabled() && cacheable_method && framing == Framing::Empty) {
        return Ok(Consulted::Forward(None));
    }
    let req_cc = request_cache_control(&head.headers);
    let now = SystemTime::now();
    let mut looked = look_up(&shared.cache, key, &head.headers, &req_cc, now);
    // A miss in memory may be a hit in the shared store (`--cache-store`): another
    // replica stored it. (Not for a URI known to be uncacheable: nobody stored it.)
    let mut shared_hit = false;
    let plain_miss = matches!(
        looked,
        Lookup::Forward {
            stored: None,
            pass: false,
            ..
        }
    );
    if plain_miss && shared.cache.load_remote(key).await {
        looked = look_up(&shared.cache, key, &head.headers, &req_cc, now);
        shared_hit = true;
    }
    // A Range request is answered from a stored whole response (206) when there is a fresh
    // one, else from a stored partial response that holds the range; otherwise it goes to
    // the origin as it is, and a 206 that comes back is kept for the range it covers. It
    // neither waits for nor leads a collapsed fetch, and an unstorable answer to it does
    // not make the URI uncacheable.
    if head.headers.contains("range") && !matches!(looked, Lookup::Hit(..) | Lookup::Refresh(..)) {
        if let Some((next, status, sent)) = serve_partial(shared, conn, head, key, &req_cc).await? {
            ctx.status = status;
            ctx.sent(sent);
            ctx.result = "TCP_HIT";
            return Ok(Consulted::Answered(next));
        }
        if req_cc.only_if_cached {
            return Err(ProxyError::NotCached(key.to_string()).into());
        }
        let fwd = match looked {
            Lookup::Forward { fwd, .. } => fwd,
            _ => "uri-miss",
        };
        return Ok(Consulted::Forward(Some(CachePlan {
            range: true,
            ..CachePlan::new(head, &req_cc, now, fwd)
        })));
    }
    let (looked, collapsed, flight) = collapse(shared, head, key, &req_cc, looked).await;
    let (stored, fwd) = match looked {
        Lookup::Hit(entry, age) => {
            let status = match (collapsed, shared_hit) {
                (true, _) => "proxylab; hit; collapsed",
                (false, true) => "proxylab; hit; detail=shared-store",
                (false, false) => "proxylab; hit",
            };
            let (next, status, sent) =
                serve_stored(shared, conn, head, &entry, age, status).await?;
            ctx.status = status;
            ctx.sent(sent);
            ctx.result = if status == 304 {
                "TCP_IMS_HIT"
            } else {
                "TCP_HIT"
            };
            ctx.content_type = shared.content_type_for_log(&entry.head.headers);
            return Ok(Consulted::Answered(next));
        }
        Lookup::Refresh(entry, age) => {
            // Decided before the client has its answer: while one revalidation of this
            // URI is under way, later stale hits start none.
            let revalidate = shared.cache.begin_refresh(key);
            let status = "proxylab; hit; detail=stale-while-revalidate";
            let served = serve_stored(shared, conn, head, &entry, age, status).await;
            let (next, status, sent) = match served {
                Ok(served) => served,
                Err(e) => {
                    if revalidate {
                        shared.cache.end_refresh(key);
                    }
                    return Err(e);
                }
            };
            ctx.status = status;
            ctx.sent(sent);
            ctx.result = "TCP_STALE_HIT";
            ctx.content_type = shared.content_type_for_log(&entry.head.headers);
            if !revalidate {
                return Ok(Consulted::Answered(next));
            }
            let refresh = super::refresh::Refresh {
                key: key.to_string(),
                stale: entry,
                request: head.headers.clone(),
                authorization: head.headers.contains("authorization"),
            };
            return Ok(Consulted::Refreshing(next, refresh));
        }
        Lookup::Forward { stored, fwd, .. } => (stored, fwd),
    };
    if req_cc.only_if_cached {
        return Err(ProxyError::NotCached(key.to_string()).into());
    }
    let validate = stored.clone().filter(|e| {
        (e.etag().is_some() || e.head.headers.contains("last-modified"))
            && !has_conditionals(&head.headers)
    });
    Ok(Consulted::Forward(Some(CachePlan {
        stored: validate,
        stale: stored.filter(|_| !req_cc.no_cache),
        flight: std::sync::Mutex::new(flight),
        ..CachePlan::new(head, &req_cc, now, fwd)
    })))
}

/// Request collapsing: a plain miss for a URI that is already being fetched waits for
/// that fetch instead of asking the origin again, then looks again. Returns the lookup to
/// go on with, whether it waited, and — for the request that fetches — the guard whose
/// drop wakes the waiters.
async fn collapse<'s>(
    shared: &'s Shared,
    head: &RequestHead,
    key: &str,
    req_cc: &CacheControl,
    looked: Lookup,
) -> (Lookup, bool, Option<FlightGuard<'s>>) {
    let plain_miss = matches!(
        looked,
        Lookup::Forward {
            stored: None,
            pass: false,
            ..
        }
    );
    if !(plain_miss && head.method == "GET" && *req_cc == CacheControl::default()) {
        return (looked, false, None);
    }
    match shared.cache.join_flight(key) {
        Some(Flight::Leader(mut guard)) => {
            // One replica fetches for all (`--cache-store`): when another one was already
            // fetching, what it stored is here now, and this replica's waiters are
            // released to it.
            if guard.across_replicas().await {
                let again = look_up(&shared.cache, key, &head.headers, req_cc, SystemTime::now());
                if !matches!(again, Lookup::Forward { .. }) {
                    return (again, true, None);
                }
                return (again, false, Some(guard));
            }
            (looked, false, Some(guard))
        }
        Some(Flight::Follower(mut done)) => {
            let wait = shared.config.upstream_timeout;
            let _ = tokio::time::timeout(wait, done.changed()).await;
            let now = SystemTime::now();
            let again = look_up(&shared.cache, key, &head.headers, req_cc, now);
            (again, true, None)
        }
        None => (looked, false, None),
    }
}

/// The part of a stored response (`stored`, `total` bytes long) that `request`'s `Range`
/// (and `If-Range`) asks for: the whole of it when its `If-Range` does not hold.
fn requested_part(request: &Headers, stored: &ResponseHead, total: u64) -> Part {
    match request
        .get("range")
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        Some(range) if if_range_holds(request, stored) => range::requested(range, total),
        _ => Part::Whole,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): absent, or it names the stored response by a strong
/// entity-tag, or by its exact `Last-Modified` date.
fn if_range_holds(request: &Headers, stored: &ResponseHead) -> bool {
    let Some(value) = request.get("if-range") else {
        return true;
    };
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return !value.starts_with(b"W/") && stored.headers.get("etag") == Some(value);
    }
    let Some(asked) = std::str::from_utf8(value)
        .ok()
        .and_then(freshness::parse_date)
    else {
        return false;
    };
    freshness::http_date(&stored.headers, "last-modified") == Some(asked)
}

/// What the cache holds for a request.
enum Lookup {
    /// Fresh enough for this request: serve it, with this age.
    Hit(Arc<Entry>, Duration),
    /// Stale, but within its `stale-while-revalidate` window: serve it, with this age, and
    /// revalidate it in the background.
    Refresh(Arc<Entry>, Duration),
    /// Go to the origin; `stored` is a response that could be revalidated, `fwd` says why
    /// (for Cache-Status, RFC 9211): nothing stored, stale, or refused by the request.
    Forward {
        stored: Option<Arc<Entry>>,
        fwd: &'static str,
        /// The URI's last response could not be stored: do not wait for other requests.
        pass: bool,
    },
}

/// Looks `key` up for a request with these headers and Cache-Control, at `now`.
fn look_up(
    cache: &Cache,
    key: &str,
    request: &wire::Headers,
    req_cc: &CacheControl,
    now: SystemTime,
) -> Lookup {
    let found = cache.lookup_or_pass(key, request);
    let Some(entry) = found.entry else {
        return Lookup::Forward {
            stored: None,
            // RFC 9211: the URI is stored, but not for a request like this one.
            fwd: if found.other_variants {
                "vary-miss"
            } else {
                "uri-miss"
            },
            pass: found.pass,
        };
    };
    let age = entry.age(now);
    let lifetime = entry.facts.lifetime;
    let res_cc = &entry.facts.cache_control;
    if freshness::satisfies_request(lifetime, age, req_cc, res_cc) {
        return Lookup::Hit(entry, age);
    }
    if freshness::serves_while_revalidating(lifetime, age, req_cc, res_cc) {
        return Lookup::Refresh(entry, age);
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

/// What the cache stage decided for a request it could not answer itself.
#[derive(Debug)]
pub struct CachePlan<'s> {
    /// The client's header section (for Vary).
    request: Headers,
    /// A stale stored response being revalidated (conditionals were added upstream).
    stored: Option<Arc<Entry>>,
    request_time: SystemTime,
    /// False when the request said no-store.
    may_store: bool,
    authorization: bool,
    /// Why the request went forward, for Cache-Status (`uri-miss`, `stale`).
    fwd: &'static str,
    /// The stored response, stale or not, that may stand in if the origin fails (not when
    /// the request said no-cache).
    stale: Option<Arc<Entry>>,
    /// The request's own `stale-if-error`.
    request_stale_if_error: Option<u64>,
    /// Set when this request leads a collapsed fetch: while it lives, requests for the
    /// same URI wait. Dropped as soon as the response head shows it will not be stored
    /// ([`storing`]), else when the request is over (its response stored or not).
    flight: std::sync::Mutex<Option<FlightGuard<'s>>>,
    /// The request asks for a range: a 206 may come back, to be kept as a partial response.
    range: bool,
}

impl CachePlan<'_> {
    /// The plan for `head`, sent at `now` for reason `fwd`, with nothing stored to
    /// revalidate or stand in, and no collapsed fetch to lead.
    fn new(head: &RequestHead, req_cc: &CacheControl, now: SystemTime, fwd: &'static str) -> Self {
        CachePlan {
            request: head.headers.clone(),
            stored: None,
            request_time: now,
            may_store: !req_cc.no_store,
            authorization: head.headers.contains("authorization"),
            fwd,
            stale: None,
            request_stale_if_error: req_cc.stale_if_error,
            flight: std::sync::Mutex::new(None),
            range: false,
        }
    }

    /// Ends this request's lead of a collapsed fetch now: the waiters look again.
    fn release_waiters(&self) {
        let guard = match self.flight.lock() {
            Ok(mut flight) => flight.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(guard);
    }

    /// Whether a stale stored response is being revalidated (`TCP_REFRESH_*` in the log).
    pub fn revalidating(&self) -> bool {
        self.stored.is_some()
    }

    /// The conditionals that revalidate the stored response, added to the upstream request.
    pub fn add_conditionals(&self, up: &mut Headers) {
        if let Some(entry) = &self.stored {
            entry.add_conditionals(up);
        }
    }
}

/// The request's Cache-Control; `Pragma: no-cache` counts as `no-cache` when there is no
/// Cache-Control (RFC 9111 §5.4).
fn request_cache_control(headers: &Headers) -> CacheControl {
    let mut cc = CacheControl::parse(headers);
    if !headers.contains("cache-control") && headers.has_token("pragma", "no-cache") {
        cc.no_cache = true;
    }
    cc
}

fn has_conditionals(headers: &Headers) -> bool {
    CONDITIONAL_FIELDS.iter().any(|h| headers.contains(h))
}

/// Whether the client's own conditional request is satisfied by `entry` (304 from cache).
fn client_condition_met(request: &Headers, entry: &Entry) -> bool {
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
    // The stored date is parsed only when the client sent one to compare it with. Without a
    // Last-Modified, the response's Date, else when it arrived (RFC 9111 §4.3.2).
    let Some(since) = freshness::http_date(request, "if-modified-since") else {
        return false;
    };
    let modified = freshness::http_date(&entry.head.headers, "last-modified")
        .or(entry.facts.date)
        .unwrap_or(entry.response_time);
    modified <= since
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
) -> Result<(Next, u16, Sent), Failure> {
    let next = shared.next(head.wants_keep_alive());
    let asked = Asked {
        method: &head.method,
        version: head.version,
        headers: &head.headers,
    };
    let (status, out, sent) = stored_bytes(shared, &asked, entry, age, cache_status, next);
    conn.writer
        .write_all(&out)
        .await
        .map_err(Failure::client_gone)?;
    Ok((next, status, sent))
}

/// What of a request matters to the answer a stored response gives.
struct Asked<'a> {
    method: &'a str,
    version: Version,
    headers: &'a Headers,
}

/// A stored response as bytes on the wire: the stored header lines replayed as they are,
/// plus Age, Via, Cache-Status, Content-Length and Connection. Returns the status sent,
/// the bytes, and how many of them are head and body.
fn stored_bytes(
    shared: &Shared,
    asked: &Asked<'_>,
    entry: &Entry,
    age: Duration,
    cache_status: &str,
    next: Next,
) -> (u16, Vec<u8>, Sent) {
    let not_modified = client_condition_met(asked.headers, entry);
    // Conditionals first, then Range (RFC 9110 §13.2.2): a 304 is never partial.
    let part = if not_modified || asked.method != "GET" || entry.head.status != 200 {
        Part::Whole
    } else {
        requested_part(asked.headers, &entry.head, entry.body.len() as u64)
    };
    let total = entry.body.len() as u64;
    let content = match part {
        _ if not_modified => Content::NotModified,
        Part::Whole if asked.method == "HEAD" => Content::Whole(&[], total),
        Part::Whole => Content::Whole(&entry.body, total),
        Part::Bytes(first, last) => {
            Content::Range(&entry.body[first as usize..=last as usize], first, total)
        }
        Part::Unsatisfiable => Content::Unsatisfiable(total),
    };
    let status = (entry.head.status, entry.head.reason.as_str());
    let replayed = Replayed {
        status,
        replay: &entry.facts.replay,
        version: entry.head.version,
    };
    response_bytes(shared, asked, replayed, content, age, cache_status, next)
}

/// What a stored response (whole or partial) sends of its own: its status and its
/// header lines as received.
struct Replayed<'a> {
    status: (u16, &'a str),
    replay: &'a [u8],
    version: Version,
}

/// What goes after the stored header lines.
enum Content<'a> {
    /// The whole body (empty for HEAD), and the representation's length.
    Whole(&'a [u8], u64),
    /// Bytes starting at this offset of a representation this long: 206.
    Range(&'a [u8], u64, u64),
    /// A range past the end of a representation this long: 416.
    Unsatisfiable(u64),
    /// The client's conditionals hold: 304.
    NotModified,
}

/// The response bytes for `content` of a stored response: status line, the replayed
/// header lines, Age, Via, Cache-Status, Content-Range and Content-Length as the content
/// needs, Connection, then the body. Returns the status, the bytes, and their split.
fn response_bytes(
    shared: &Shared,
    asked: &Asked<'_>,
    stored: Replayed<'_>,
    content: Content<'_>,
    age: Duration,
    cache_status: &str,
    next: Next,
) -> (u16, Vec<u8>, Sent) {
    let (status, reason) = match content {
        Content::NotModified => (304, "Not Modified"),
        Content::Range(..) => (206, "Partial Content"),
        Content::Unsatisfiable(_) => (416, "Range Not Satisfiable"),
        Content::Whole(..) => stored.status,
    };
    let body: &[u8] = match content {
        Content::Whole(body, _) | Content::Range(body, _, _) => body,
        Content::Unsatisfiable(_) | Content::NotModified => &[],
    };
    let mut out = Vec::with_capacity(256 + stored.replay.len() + body.len());
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
    out.extend_from_slice(stored.replay);
    line(
        &mut out,
        &[b"Age: ", number.format(age.as_secs()).as_bytes()],
    );
    if let Some(via) = shared.via(stored.version) {
        line(&mut out, &[b"Via: ", via.as_bytes()]);
    }
    line(&mut out, &[b"Cache-Status: ", cache_status.as_bytes()]);
    match content {
        Content::NotModified => {}
        Content::Whole(_, total) => line(
            &mut out,
            &[b"Content-Length: ", number.format(total).as_bytes()],
        ),
        Content::Range(body, first, total) => {
            let last = first + body.len() as u64 - 1;
            let range = format!("bytes {first}-{last}/{total}");
            line(&mut out, &[b"Content-Range: ", range.as_bytes()]);
            line(
                &mut out,
                &[b"Content-Length: ", number.format(body.len()).as_bytes()],
            );
        }
        Content::Unsatisfiable(total) => {
            let range = format!("bytes */{total}");
            line(&mut out, &[b"Content-Range: ", range.as_bytes()]);
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
    }
    match (next, asked.version) {
        (Next::Close, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (Next::KeepAlive, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (Next::KeepAlive, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    let head = out.len() as u64;
    out.extend_from_slice(body);
    let sent = Sent {
        head,
        body: body.len() as u64,
    };
    (status, out, sent)
}

/// A stored partial response answers a GET for one range inside a piece it holds, when it
/// is fresh enough for the request (RFC 9111 §3.3, RFC 9110 §14.2). Returns what was sent,
/// or `None` when it cannot answer (then the request goes to the origin).
async fn serve_partial(
    shared: &Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    key: &str,
    req_cc: &CacheControl,
) -> Result<Option<(Next, u16, Sent)>, Failure> {
    let Some(partial) = shared.cache.partial(key) else {
        return Ok(None);
    };
    let age = partial.age(SystemTime::now());
    let (lifetime, res_cc) = (partial.facts.lifetime, &partial.facts.cache_control);
    let conditional = has_conditionals(&head.headers) && !head.headers.contains("if-range");
    if head.method != "GET"
        || conditional
        || !freshness::satisfies_request(lifetime, age, req_cc, res_cc)
    {
        return Ok(None);
    }
    let Part::Bytes(first, last) = requested_part(&head.headers, &partial.head, partial.total)
    else {
        return Ok(None);
    };
    let Some(bytes) = partial.bytes(first, last) else {
        return Ok(None);
    };
    let next = shared.next(head.wants_keep_alive());
    let asked = Asked {
        method: &head.method,
        version: head.version,
        headers: &head.headers,
    };
    let replayed = Replayed {
        status: (206, "Partial Content"),
        replay: &partial.facts.replay,
        version: partial.head.version,
    };
    let content = Content::Range(bytes, first, partial.total);
    let status = "proxylab; hit; detail=partial";
    let (code, out, sent) = response_bytes(shared, &asked, replayed, content, age, status, next);
    conn.writer
        .write_all(&out)
        .await
        .map_err(Failure::client_gone)?;
    Ok(Some((next, code, sent)))
}

/// A 304 to our own conditional request: the stored response, refreshed with the 304's
/// header fields (RFC 9111 §4.3.4), is stored again and answers the client whole. Returns
/// the bytes to send and what comes next, or `None` when the response is not such a 304.
pub async fn revalidated(
    shared: &Shared,
    plan: &CachePlan<'_>,
    wants: &Wants,
    res: &ResponseHead,
    up_rd: &mut Reader<TapRead>,
    from: Framing,
    ctx: &mut RequestContext,
) -> Result<Option<(Next, Vec<u8>)>, Failure> {
    let (304, Some(stored)) = (res.status, &plan.stored) else {
        return Ok(None);
    };
    wire::discard_body(up_rd, from, Some(shared.config.upstream_timeout))
        .await
        .map_err(|e| Failure::Abort(format!("304 body: {e}")))?;
    let mut head = stored.head.clone();
    head.headers = super::refresh_headers(&stored.head.headers, &res.headers);
    let refreshed = Entry::assemble(
        head,
        stored.body.clone(),
        (plan.request_time, SystemTime::now()),
        stored.vary.clone(),
        shared.cache.targeting(),
    );
    let entry = shared.cache.store(&wants.key, refreshed);
    let age = entry.age(SystemTime::now());
    let status = format!("proxylab; fwd={}; fwd-status=304", plan.fwd);
    let next = shared.next(wants.keep_alive);
    let asked = Asked {
        method: &wants.method,
        version: wants.version,
        headers: &plan.request,
    };
    let (status_code, last, sent) = stored_bytes(shared, &asked, &entry, age, &status, next);
    ctx.status = status_code;
    ctx.result = "TCP_REFRESH_UNMODIFIED";
    ctx.sent(sent);
    Ok(Some((next, last)))
}

/// What a stored response can do when the origin fails.
#[derive(Debug)]
pub enum StandIn {
    /// Nothing stored that may be served stale now: the failure goes to the client.
    Nothing,
    /// The stored response may not be served stale (must-revalidate and its kin): 504.
    Forbidden(ProxyError),
    /// Served stale within its `stale-if-error` window (RFC 5861 §4): these bytes.
    Serve {
        next: Next,
        status: u16,
        bytes: Vec<u8>,
        sent: Sent,
    },
}

/// Whether a stale stored response stands in for an origin that failed (`why`): within the
/// response's or the request's `stale-if-error` window, and never when must-revalidate,
/// proxy-revalidate, s-maxage or no-cache forbid serving it stale (RFC 9111 §4.2.4).
pub fn stand_in(
    shared: &Shared,
    plan: Option<&CachePlan<'_>>,
    wants: &Wants,
    why: &str,
) -> StandIn {
    let Some((plan, entry)) = plan.and_then(|p| p.stale.as_ref().map(|e| (p, e))) else {
        return StandIn::Nothing;
    };
    let age = entry.age(SystemTime::now());
    let (lifetime, cc) = (entry.facts.lifetime, &entry.facts.cache_control);
    if age < lifetime && !cc.no_cache {
        // Fresh, yet forwarded (the request asked for it): not a stale stand-in.
        return StandIn::Nothing;
    }
    if cc.forbids_stale() {
        return StandIn::Forbidden(ProxyError::MustRevalidate {
            key: wants.key.clone(),
            why: why.to_string(),
        });
    }
    let window = cc.stale_if_error.max(plan.request_stale_if_error);
    match window {
        Some(extra) if age < lifetime + Duration::from_secs(extra) => {
            let next = shared.next(wants.keep_alive);
            let asked = Asked {
                method: &wants.method,
                version: wants.version,
                headers: &plan.request,
            };
            let status = "proxylab; hit; detail=stale-if-error";
            let (code, bytes, sent) = stored_bytes(shared, &asked, entry, age, status, next);
            StandIn::Serve {
                next,
                status: code,
                bytes,
                sent,
            }
        }
        _ => StandIn::Nothing,
    }
}

/// The origin could not be reached or failed before answering (`err`): a stale stored
/// response stands in when [`stand_in`] allows, else the client gets the error (504 when
/// the stored response had to be revalidated).
pub async fn when_origin_fails(
    shared: &Shared,
    conn: &mut ClientConn,
    plan: Option<&CachePlan<'_>>,
    wants: &Wants,
    err: ProxyError,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    match stand_in(shared, plan, wants, &err.to_string()) {
        StandIn::Nothing => Err(err.into()),
        StandIn::Forbidden(must_revalidate) => Err(must_revalidate.into()),
        StandIn::Serve {
            next,
            status,
            bytes,
            sent,
        } => {
            conn.writer
                .write_all(&bytes)
                .await
                .map_err(Failure::client_gone)?;
            ctx.status = status;
            ctx.sent(sent);
            // Squid's name for "the refresh failed, the old copy was served".
            ctx.result = "TCP_REFRESH_FAIL_OLD";
            ctx.error = Some(format!("served stale (stale-if-error): {err}"));
            Ok(next)
        }
    }
}

/// A response on its way to the client that the cache keeps: its head as received (before
/// the proxy's own additions) and its body, captured while it streams.
#[derive(Debug)]
pub struct Storing<'p> {
    head: ResponseHead,
    request: &'p Headers,
    request_time: SystemTime,
    capture: wire::Capture,
    /// A 206, kept as a partial response.
    partial: bool,
}

/// Decides whether the response with this head (hop-by-hop fields gone, rewrites applied)
/// is stored, and says so in its `Cache-Status`. A GET whose response is not stored marks
/// the URI uncacheable, so that later requests for it do not wait for one another.
pub fn storing<'p>(
    shared: &Shared,
    plan: Option<&'p CachePlan<'_>>,
    wants: &Wants,
    res: &mut ResponseHead,
    from: Framing,
) -> Option<Storing<'p>> {
    let plan = plan?;
    let request = freshness::StoreRequest {
        method: &wants.method,
        no_store: !plan.may_store,
        authorization: plan.authorization,
    };
    let control = shared.cache.targeting().control(&res.headers);
    let partial = res.status == 206;
    let storable = match partial {
        true => plan.range && super::partial::storable(&request, res, &control),
        false => freshness::storable(&request, res.status, &res.headers, &control),
    };
    let store = storable.then(|| Storing {
        head: res.clone(),
        request: &plan.request,
        request_time: plan.request_time,
        capture: wire::Capture::new(shared.cache.max_object()),
        partial,
    });
    if store.is_none() && wants.method == "GET" && !plan.range {
        // Hit-for-pass first, then wake the requests waiting for this one: they look again,
        // see the mark and go to the origin themselves at once, instead of waiting for a
        // body that will not be shared.
        shared.cache.mark_uncacheable(&wants.key);
        plan.release_waiters();
    }
    let stored_too = store.is_some()
        && matches!(from, Framing::Length(n) if n as usize <= shared.cache.max_object())
        || (store.is_some() && from == Framing::Empty);
    let status = format!(
        "proxylab; fwd={}{}",
        plan.fwd,
        if stored_too { "; stored" } else { "" }
    );
    res.headers.push("Cache-Status", status);
    store
}

/// A POST response a later GET may reuse (RFC 9111 §4.3.5 read with §3): one with explicit
/// freshness whose `Content-Location` is the POST's own target, as it would be a GET's. Not
/// when it varies (the POST's headers are not kept to match a variant).
pub fn storing_post(
    shared: &Shared,
    wants: &Wants,
    res: &ResponseHead,
    from: Framing,
) -> Option<Storing<'static>> {
    /// The request header values a stored POST response is matched against: none.
    static NO_REQUEST: Headers = Headers(Vec::new());
    if wants.method != "POST" || !shared.cache.enabled() || res.headers.contains("vary") {
        return None;
    }
    let location = std::str::from_utf8(res.headers.get("content-location")?).ok()?;
    let same = same_origin_key(&wants.key, location).as_deref() == Some(wants.key.as_str());
    let as_get = freshness::StoreRequest {
        method: "GET",
        no_store: false,
        authorization: false,
    };
    let control = shared.cache.targeting().control(&res.headers);
    let storable = same
        && matches!(res.status, 200 | 203)
        && freshness::has_explicit_freshness(&res.headers, &control)
        && freshness::storable(&as_get, res.status, &res.headers, &control)
        && matches!(from, Framing::Length(_) | Framing::Empty | Framing::Chunked);
    storable.then(|| Storing {
        head: res.clone(),
        request: &NO_REQUEST,
        request_time: SystemTime::now(),
        capture: wire::Capture::new(shared.cache.max_object()),
        partial: false,
    })
}

impl Storing<'_> {
    /// Where the body is captured while it is copied to the client.
    pub fn capture(&mut self) -> &mut wire::Capture {
        &mut self.capture
    }

    /// Stores the response once its whole body went through.
    pub fn finish(self, cache: &Cache, key: &str) {
        match self.capture.into_body() {
            None if self.partial => {}
            // Larger than --cache-max-object: not stored, so not worth waiting for.
            None => cache.mark_uncacheable(key),
            Some(body) => {
                let times = (self.request_time, SystemTime::now());
                let (head, body, targeting) = (self.head, body.into(), cache.targeting());
                if self.partial {
                    if let Some(piece) = Partial::new(head, body, times, targeting) {
                        cache.store_partial(key, piece);
                    }
                } else if let Some(entry) = Entry::new(head, body, self.request, times, targeting) {
                    cache.store(key, entry);
                }
            }
        }
    }
}

/// Drops stored responses for `key`, and for same-origin `Location` / `Content-Location`.
pub fn invalidate(cache: &Cache, key: &str, headers: &Headers) {
    cache.invalidate(key);
    for field in ["location", "content-location"] {
        let value = headers.get(field).and_then(|v| std::str::from_utf8(v).ok());
        if let Some(target) = value.and_then(|v| same_origin_key(key, v)) {
            cache.invalidate(&target);
        }
    }
}

/// The cache key that a `Location` or `Content-Location` value names, when it is on the
/// same origin as `key`: a path is resolved against that origin; an absolute URI is
/// taken as its key (`http://h/x` is `http://h:80/x`), or as it is (reverse mode's keys
/// keep the Host as the client sent it).
fn same_origin_key(key: &str, value: &str) -> Option<String> {
    let origin = origin_of(key);
    let value = value.trim();
    if value.starts_with('/') {
        return Some(format!("{origin}{value}"));
    }
    let normalized = match target::parse("GET", value) {
        Ok(Target::Absolute { authority, path }) => Some(super::key(&authority, &path)),
        _ => None,
    };
    normalized
        .into_iter()
        .chain(Some(value.to_string()))
        .find(|k| {
            k.strip_prefix(origin)
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// A cache key's origin, `http://host:port` (the key itself when it has no path).
fn origin_of(key: &str) -> &str {
    let origin_end = key.find("://").map_or(0, |i| i + 3);
    key[origin_end..]
        .find('/')
        .map_or(key, |slash| &key[..origin_end + slash])
}

/// `PURGE http://host/path`: removes the stored responses for that URI. Only clients on
/// this machine may purge.
pub async fn purge(
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
    own::finish(conn, head, framing, res, text.as_bytes(), ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Location or Content-Location names, against the request's key.
    #[test]
    fn same_origin_references_resolve_to_keys() {
        let key = "http://h:80/a?b";
        for (value, expected) in [
            ("/x", Some("http://h:80/x")),
            ("http://h/x", Some("http://h:80/x")),
            ("http://H:80/x", Some("http://h:80/x")),
            ("http://h:8080/x", None),
            ("http://other/x", None),
            ("https://h/x", None),
            ("x", None),
        ] {
            assert_eq!(same_origin_key(key, value).as_deref(), expected, "{value}");
        }
        // Reverse mode's keys carry the Host as sent, without a port.
        let reverse = "http://site.test/a";
        assert_eq!(
            same_origin_key(reverse, "http://site.test/b").as_deref(),
            Some("http://site.test/b")
        );
    }
}
