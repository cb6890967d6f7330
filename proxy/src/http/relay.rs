//! The body relay: the request (and its body) up, the response down.
//!
//! Takes: a request head ready for the wire, a connection to the upstream, and what the
//! client wants. Returns: whether the client connection can carry another request. The
//! response's interim 1xx heads are passed on, its final head rewritten (hop-by-hop fields,
//! rewrites, `Via`, `Cache-Status`) and its body re-framed for what the client understands;
//! the cache stage ([`crate::cache::stage`]) is asked about a 304 and about storing on the
//! way. The last write to the client waits until the upstream connection is back in the
//! pool, so that the client's next request finds it there.

use crate::cache::stage::{self, CachePlan};
use crate::conn::{self, ClientConn, Next};
use crate::error::ProxyError;
use crate::http::forward;
use crate::http::target::Authority;
use crate::http::upstream::UpstreamConn;
use crate::http::wire::{
    self, copy_body, BodyError, Framing, HeadError, Reader, ResponseHead, Version,
};
use crate::observe::capture::{TapRead, TapWrite};
use crate::policy::rules::Direction;
use crate::policy::Rewrites;
use crate::request::{Failure, RequestContext, Wants};
use crate::shared::Shared;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// One request on its way through the relay: what the client wants, the cache stage's
/// plan for the response, and the rules' header rewrites.
#[derive(Debug)]
pub struct Exchange<'s> {
    pub wants: Wants,
    pub plan: Option<CachePlan<'s>>,
    pub rewrites: Option<Rewrites>,
}

/// Sends `wire_head` (and the request body, as `framing` says) on `upstream` and relays
/// the response. A request without a body whose pooled connection turns out closed is
/// sent once more on a fresh one; a request with a body never is.
pub async fn exchange(
    shared: &Shared,
    conn: &mut ClientConn,
    mut upstream: UpstreamConn,
    wire_head: Vec<u8>,
    framing: Framing,
    ex: &Exchange<'_>,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    ctx.head_up = wire_head.len() as u64;
    if framing != Framing::Empty {
        return with_body(shared, conn, upstream, wire_head, framing, ex, ctx).await;
    }
    let mut relayed = without_body(shared, conn, &mut upstream, &wire_head, ex, ctx).await;
    if matches!(&relayed, Err(e) if e.retryable && upstream.reused) {
        // The pooled connection had been closed by the server meanwhile (nothing was
        // answered on it): send the request once more, on a fresh connection.
        let authority = upstream.authority.clone();
        tracing::debug!(
            "pooled connection to {authority} failed before answering; retrying on a new one"
        );
        upstream = shared.upstreams.connect(&authority).await?;
        ctx.upstream_peer = Some(upstream.peer);
        ctx.upstream_reused = false;
        relayed = without_body(shared, conn, &mut upstream, &wire_head, ex, ctx).await;
    }
    let relayed = relayed.map_err(|e| e.failure)?;
    if relayed.upstream_reusable {
        shared.upstreams.checkin(upstream);
    }
    relayed.finish(&mut conn.writer).await
}

async fn without_body(
    shared: &Shared,
    conn: &mut ClientConn,
    upstream: &mut UpstreamConn,
    wire_head: &[u8],
    ex: &Exchange<'_>,
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
        ex,
        ctx,
    )
    .await
}

/// With a body: send it up while the response comes down. Both at once, so that
/// `100 Continue` reaches a client that waits for it, an early answer (say, 413) is not
/// stuck behind a body the server will not read, and a server that streams its response
/// while it reads (origin-sim's /echo) does not deadlock against us.
async fn with_body(
    shared: &Shared,
    conn: &mut ClientConn,
    mut upstream: UpstreamConn,
    wire_head: Vec<u8>,
    framing: Framing,
    ex: &Exchange<'_>,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
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
        let idle = Some(shared.config.idle_timeout);
        let send = copy_body(client_rd, framing, up_wr, framing, wire_head, idle);
        let relay = relay_response(shared, up_rd, client_wr, up_authority, ex, ctx);
        tokio::pin!(send, relay);
        // `None` while the body is still going up; `Some(true)` once it all went; `Some(false)`
        // when the server stopped reading it (it may still answer).
        let mut sent: Option<bool> = None;
        let mut bytes_up = 0;
        let ended = loop {
            tokio::select! {
                // Look at the body first: a response that arrives just as the last body bytes
                // leave must not be taken for an early one.
                biased;
                r = &mut send, if sent.is_none() => match r {
                    Ok(c) => { sent = Some(true); bytes_up = c.bytes; }
                    Err(BodyError::Write(_)) => sent = Some(false),
                    Err(e) => break Err(e),
                },
                r = &mut relay => break Ok(r.map_err(|e| e.failure)?),
            }
        };
        (ended, sent, bytes_up)
    };
    let relayed = match relayed {
        Ok(relayed) => relayed,
        // The client's body is broken (a bad chunk size): nothing more of it goes up, and the
        // upstream connection is dropped with it. Before a final response head came back
        // the client is told why (a 100 Continue before it is fine); after, only a cut
        // connection can say it.
        Err(e @ BodyError::BadChunk(_)) if ctx.status == 0 => {
            return Err(ProxyError::BadRequest(format!("request body: {e}")).into())
        }
        Err(e) => return Err(Failure::Abort(format!("request body failed: {e}"))),
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
                .map_err(Failure::client_gone)?;
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

/// Reads the upstream's response and writes it to the client: interim 1xx responses as
/// they come, then the final one with its header section rewritten and its body re-framed
/// for what the client understands.
async fn relay_response(
    shared: &Shared,
    up_rd: &mut Reader<TapRead>,
    client_wr: &mut TapWrite,
    authority: &Authority,
    ex: &Exchange<'_>,
    ctx: &mut RequestContext,
) -> Result<Relayed, RelayError> {
    let wants = &ex.wants;
    let mut res = final_head(shared, up_rd, client_wr, authority, wants.version).await?;
    let from = wire::response_framing(&wants.method, &res).map_err(|e| {
        Failure::Answer(ProxyError::BadUpstream {
            host: authority.to_string(),
            reason: e.into(),
        })
    })?;
    ctx.status = res.status;
    let upstream_keeps = res.keeps_alive() && from != Framing::Close;
    // A 5xx from the origin: a stale stored response may stand in (stale-if-error).
    if res.status >= 500 {
        let why = format!("it answered {}", res.status);
        if let stage::StandIn::Serve {
            next,
            status,
            bytes,
            sent,
        } = stage::stand_in(shared, ex.plan.as_ref(), wants, &why)
        {
            let timeout = Some(shared.config.upstream_timeout);
            let drained = wire::discard_body(up_rd, from, timeout).await.is_ok();
            ctx.status = status;
            ctx.sent(sent);
            ctx.result = "TCP_REFRESH_FAIL_OLD";
            return Ok(Relayed {
                next,
                upstream_reusable: upstream_keeps && drained,
                last: bytes,
            });
        }
    }

    forward::strip_hop_by_hop(&mut res.headers);
    // Before the cache stores the response: stored responses carry the rewrites.
    if let Some(rewrites) = &ex.rewrites {
        rewrites.apply(Direction::Response, &mut res.headers);
    }
    ctx.content_type = shared.content_type_for_log(&res.headers);
    // An unsafe method that succeeded makes stored responses for its target stale
    // (RFC 9111 §4.4), and those for same-origin Location / Content-Location too.
    if !matches!(wants.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE") && res.status < 400 {
        stage::invalidate(&shared.cache, &wants.key, &res.headers);
    }
    if let Some(plan) = &ex.plan {
        if let Some((next, last)) =
            stage::revalidated(shared, plan, wants, &res, up_rd, from, ctx).await?
        {
            return Ok(Relayed {
                next,
                upstream_reusable: upstream_keeps,
                last,
            });
        }
    }
    let mut store = stage::storing(shared, ex.plan.as_ref(), wants, &mut res, from)
        .or_else(|| stage::storing_post(shared, wants, &res, from));
    // Fields that target this cache stop here in reverse mode (RFC 9213).
    let targeting = shared.cache.targeting();
    if targeting.strip {
        res.headers.0.retain(|h| !targeting.is_targeted(&h.name));
    }
    if let Some(via) = shared.via(res.version) {
        forward::add_via(&mut res.headers, via);
    }
    let to = reframe(&mut res, from, wants.version);
    let next = shared.next(wants.keep_alive && to != Framing::Close);
    conn::set_connection(&mut res.headers, wants.version, next);
    res.version = Version::Http11;

    let mut out = Vec::with_capacity(512);
    res.write_to(&mut out);
    let head_len = out.len() as u64;
    let timeout = Some(shared.config.upstream_timeout);
    // A large body that nothing keeps, captures or re-frames moves socket to socket.
    #[cfg(target_os = "linux")]
    let out = match (from, &store) {
        (Framing::Length(n), None) if from == to && n >= SPLICE_AT_LEAST => {
            match splice_body(up_rd, client_wr, out, n, shared.config.upstream_timeout).await {
                Spliced::Done(last) => {
                    ctx.head_down = head_len;
                    ctx.bytes_down = n;
                    return Ok(Relayed {
                        next,
                        upstream_reusable: upstream_keeps,
                        last,
                    });
                }
                Spliced::Failed(e) => {
                    return Err(Failure::Abort(format!("response body cut off: {e}")).into())
                }
                Spliced::NotHere(out) => out,
            }
        }
        _ => out,
    };
    let capture = store.as_mut().map(stage::Storing::capture);
    match wire::copy_body_but_last_write(up_rd, from, client_wr, to, out, timeout, capture).await {
        Ok((c, last)) => {
            ctx.head_down = head_len;
            ctx.bytes_down = c.bytes;
            if let Some(store) = store {
                store.finish(&shared.cache, &wants.key);
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

/// Bodies at least this long are spliced (smaller ones go out with their head in one
/// write, which costs less than setting up a pipe).
#[cfg(target_os = "linux")]
const SPLICE_AT_LEAST: u64 = 64 * 1024;

/// What [`splice_body`] did.
#[cfg(target_os = "linux")]
enum Spliced {
    /// The body went through; these are its last bytes, still to be written.
    Done(Vec<u8>),
    /// It failed part-way: the response is cut off.
    Failed(std::io::Error),
    /// A capture taps a side, or more than the body is already read: the head (given
    /// back) goes the ordinary way.
    NotHere(Vec<u8>),
}

/// Sends `head` and the `n`-byte body that follows it upstream on to the client: what is
/// already read with the head, then the rest by `splice` — all but its last 16 KiB, which
/// come back to go out after the upstream connection is pooled (as
/// [`wire::copy_body_but_last_write`] does).
#[cfg(target_os = "linux")]
async fn splice_body(
    up_rd: &mut Reader<TapRead>,
    client_wr: &mut TapWrite,
    mut head: Vec<u8>,
    n: u64,
    idle: Duration,
) -> Spliced {
    let ahead = up_rd.buffered().len() as u64;
    let untapped = up_rd.get_ref().untapped().is_some() && client_wr.untapped().is_some();
    if !untapped || ahead > n {
        return Spliced::NotHere(head);
    }
    head.extend_from_slice(&up_rd.take_buffered());
    if let Err(e) = client_wr.write_all(&head).await {
        return Spliced::Failed(e);
    }
    let (Some(from), Some(to)) = (up_rd.get_ref().untapped(), client_wr.untapped()) else {
        return Spliced::Failed(std::io::Error::other("a capture started mid-body"));
    };
    match crate::http::splice::copy_exact(from, to, n - ahead, 16 * 1024, idle).await {
        Ok(last) => Spliced::Done(last),
        Err(e) => Spliced::Failed(e),
    }
}

/// Reads response heads until the final one, passing interim (1xx) ones to HTTP/1.1
/// clients (RFC 9110 §15.2: HTTP/1.0 clients do not understand them).
async fn final_head(
    shared: &Shared,
    up_rd: &mut Reader<TapRead>,
    client_wr: &mut TapWrite,
    authority: &Authority,
    client_version: Version,
) -> Result<ResponseHead, RelayError> {
    let waited = shared.config.upstream_timeout;
    let deadline = tokio::time::Instant::now() + waited;
    loop {
        let res = up_rd
            .read_response_head(shared.limits, Some(deadline))
            .await
            .map_err(|e| upstream_head_error(authority, e, waited))?;
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
            return Ok(res);
        }
        if client_version == Version::Http11 {
            let mut interim = res;
            forward::strip_hop_by_hop(&mut interim.headers);
            interim.version = Version::Http11;
            let mut out = Vec::new();
            interim.write_to(&mut out);
            client_wr
                .write_all(&out)
                .await
                .map_err(Failure::client_gone)?;
        }
    }
}

/// How the body goes to the client: chunked and close-delimited bodies go to HTTP/1.1
/// clients chunked (so the client's connection can stay open), to HTTP/1.0 clients
/// close-delimited. Sets the framing header fields to match.
fn reframe(res: &mut ResponseHead, from: Framing, client_version: Version) -> Framing {
    match from {
        Framing::Length(n) => {
            forward::single_content_length(&mut res.headers, n);
            from
        }
        Framing::Chunked | Framing::Close if client_version == Version::Http11 => {
            res.headers.remove("content-length");
            res.headers.push("Transfer-Encoding", "chunked");
            Framing::Chunked
        }
        Framing::Chunked | Framing::Close => {
            res.headers.remove("content-length");
            Framing::Close
        }
        other => other,
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
