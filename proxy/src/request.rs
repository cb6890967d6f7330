//! One request's record, from arrival to the log line, and how a stage can fail.
//!
//! Every stage writes what it learns into the [`RequestContext`]; the observers (the log
//! line, [`crate::observe::accesslog`], [`crate::observe::metrics`]) read it when the
//! request is over. Nothing here depends on the stages or the observers.

use crate::error::ProxyError;
use crate::http::target::Authority;
use crate::http::wire::{RequestHead, Version};
use std::net::SocketAddr;
use std::time::Instant;

/// Everything known about one request, from arrival to the log line.
#[derive(Debug)]
pub struct RequestContext {
    pub id: u64,
    pub peer: SocketAddr,
    pub started: Instant,
    pub method: String,
    pub target: String,
    pub status: u16,
    /// Request body bytes sent upstream (a tunnel's: client to server).
    pub bytes_up: u64,
    /// The request head's bytes as sent upstream.
    pub head_up: u64,
    /// Response body bytes sent to the client (a tunnel's: server to client).
    pub bytes_down: u64,
    /// The response head's bytes as sent to the client.
    pub head_down: u64,
    /// The upstream server, once one was chosen.
    pub upstream: Option<Authority>,
    /// The address actually dialed (or reused), once connected.
    pub upstream_peer: Option<SocketAddr>,
    pub upstream_reused: bool,
    pub error: Option<String>,
    /// The client's HTTP version.
    pub version: Version,
    /// The user who authenticated (with `--auth-file`).
    pub user: Option<String>,
    /// What happened, as Squid's result codes name it: `TCP_MISS`, `TCP_HIT`,
    /// `TCP_IMS_HIT` (304 from the cache), `TCP_REFRESH_UNMODIFIED`, `TCP_REFRESH_MODIFIED`,
    /// `TCP_REFRESH_FAIL_OLD` (stale served for a failed origin), `TCP_DENIED`, `TCP_TUNNEL`,
    /// or `NONE` (answered by the proxy itself).
    pub result: &'static str,
    pub content_type: Option<String>,
    /// Request headers the combined and JSON log formats print (only kept when they do).
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// The rule that blocked the request.
    pub blocked_by: Option<String>,
    /// Refused while its head was being read (400, 408, 414, 431): no method or target
    /// was understood; `method` is `NONE` and `target` names the error, as Squid logs it.
    pub head_refused: bool,
}

impl RequestContext {
    /// The record of request `id` from `peer`, as it arrived; with `keep_headers`, the
    /// Referer and User-Agent the combined and JSON log formats print.
    pub fn new(id: u64, peer: SocketAddr, head: &RequestHead, keep_headers: bool) -> Self {
        let text = |name| {
            keep_headers
                .then(|| head.headers.get(name))
                .flatten()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        RequestContext {
            referer: text("referer"),
            user_agent: text("user-agent"),
            ..RequestContext::blank(id, peer, &head.method, &head.target, head.version)
        }
    }

    /// The record of a request refused before its head could be read, from `peer`, with
    /// this `status` and reason (Squid: `NONE/400 … NONE error:invalid-request`).
    pub fn refused(id: u64, peer: SocketAddr, status: u16, why: String) -> Self {
        let target = match status {
            408 => "error:request-timeout",
            414 => "error:uri-too-long",
            431 => "error:request-header-fields-too-large",
            _ => "error:invalid-request",
        };
        RequestContext {
            status,
            error: Some(why),
            head_refused: true,
            ..RequestContext::blank(id, peer, "NONE", target, Version::Http11)
        }
    }

    /// Notes what was written to the client.
    pub fn sent(&mut self, sent: crate::conn::Sent) {
        self.head_down = sent.head;
        self.bytes_down = sent.body;
    }

    /// A record with nothing known yet but who asked for what.
    fn blank(id: u64, peer: SocketAddr, method: &str, target: &str, version: Version) -> Self {
        RequestContext {
            id,
            peer,
            started: Instant::now(),
            method: method.to_string(),
            target: target.to_string(),
            status: 0,
            bytes_up: 0,
            head_up: 0,
            bytes_down: 0,
            head_down: 0,
            upstream: None,
            upstream_peer: None,
            upstream_reused: false,
            error: None,
            version,
            user: None,
            result: "NONE",
            content_type: None,
            referer: None,
            user_agent: None,
            blocked_by: None,
            head_refused: false,
        }
    }
}

/// How a request failed: with an answer the client can still be sent, or after the
/// response head was already on its way (then the connection can only be cut).
#[derive(Debug)]
pub enum Failure {
    Answer(ProxyError),
    Abort(String),
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Answer(e)
    }
}

impl Failure {
    /// The client connection failed while we wrote to it.
    pub fn client_gone(e: std::io::Error) -> Self {
        Failure::Abort(format!("client went away: {e}"))
    }
}

/// What the client's request said about the response it can take.
#[derive(Debug)]
pub struct Wants {
    pub version: Version,
    pub keep_alive: bool,
    pub method: String,
    /// The request's cache key (also what an unsafe method invalidates).
    pub key: String,
}
