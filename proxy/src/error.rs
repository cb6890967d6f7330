//! Errors: one enum, tagged by the side that caused them.
//!
//! Takes: whatever went wrong in a stage. Returns: the status code, a one-sentence
//! explanation for the error page, and the side for the log. A student can `match` on
//! [`ProxyError`] to see every way a request can fail (lab 2 grades several of them).

use crate::http::wire::{Headers, ResponseHead};

/// Who caused an error: it decides the status code family and how loudly it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong or too slowly (4xx).
    Client,
    /// The upstream server failed or could not be reached (5xx, 502/504).
    Upstream,
    /// The proxy itself refused or failed (508, 501, 500).
    Internal,
}

/// Everything that can end a request with an error page.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request is malformed: {0}")]
    BadRequest(String),
    #[error("the request header section did not arrive in time")]
    HeaderTimeout,
    #[error("the request-target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request header section is larger than {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the proxy does not support {0}")]
    NotImplemented(String),
    #[error("{0}")]
    Forbidden(String),
    /// Blocked by a filtering rule; the text names the rule and its line.
    #[error("blocked by {0}")]
    Blocked(String),
    /// Proxy authentication missing or wrong (407); the text never holds the password.
    #[error("proxy authentication required: {0}")]
    AuthRequired(String),
    /// A request that would come back to this proxy; the text says how.
    #[error("{0}: a forwarding loop")]
    Loop(String),
    #[error("could not resolve the host name {0}")]
    Unresolvable(String),
    #[error("could not connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connecting to {0} took too long")]
    ConnectTimeout(String),
    #[error(
        "{0} is not in the cache, and the request allows only a cached answer (only-if-cached)"
    )]
    NotCached(String),
    #[error("{0} did not answer within {1:?}")]
    UpstreamTimeout(String, std::time::Duration),
    #[error("{host} sent an invalid response: {reason}")]
    BadUpstream { host: String, reason: String },
    /// The origin failed and the stored response may not be served stale (RFC 9111
    /// §4.2.4: must-revalidate and its kin): 504, never the stale response.
    #[error("{key} is stored but must be revalidated first, and the origin failed ({why})")]
    MustRevalidate { key: String, why: String },
}

impl ProxyError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_) => 400,
            ProxyError::HeaderTimeout => 408,
            ProxyError::Forbidden(_) | ProxyError::Blocked(_) => 403,
            ProxyError::AuthRequired(_) => 407,
            ProxyError::UriTooLong(_) => 414,
            ProxyError::HeadersTooLarge(_) => 431,
            ProxyError::NotImplemented(_) => 501,
            ProxyError::Loop(_) => 508,
            ProxyError::Unresolvable(_)
            | ProxyError::Connect { .. }
            | ProxyError::BadUpstream { .. } => 502,
            ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTimeout(..)
            | ProxyError::NotCached(_)
            | ProxyError::MustRevalidate { .. } => 504,
        }
    }

    /// Whether the origin failed (could not be reached, did not answer in time, answered
    /// nonsense): what a stale stored response may stand in for.
    pub fn origin_failed(&self) -> bool {
        matches!(
            self,
            ProxyError::Unresolvable(_)
                | ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout(_)
                | ProxyError::UpstreamTimeout(..)
                | ProxyError::BadUpstream { .. }
        )
    }

    pub fn side(&self) -> Side {
        match self.status() {
            400..=499 => Side::Client,
            501 | 508 => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// The error page: status line, short plain-text body, and `Connection: close`
    /// when the connection cannot continue.
    pub fn response(&self, via: Option<&str>) -> (ResponseHead, Vec<u8>) {
        let (mut head, body) = error_page(self.status(), &self.to_string(), via);
        if let ProxyError::AuthRequired(_) = self {
            head.headers.push(
                "Proxy-Authenticate",
                format!("Basic realm=\"{}\"", crate::policy::auth::REALM),
            );
        }
        (head, body)
    }
}

/// The reason phrase for the statuses the proxy itself produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        508 => "Loop Detected",
        _ => "Error",
    }
}

/// A small plain-text response the proxy writes itself.
pub fn error_page(status: u16, sentence: &str, via: Option<&str>) -> (ResponseHead, Vec<u8>) {
    let body = format!("{status} {}: {sentence}.\n", reason(status)).into_bytes();
    let mut head = ResponseHead::new(status, reason(status));
    head.headers = Headers::default();
    head.headers
        .push("Content-Type", "text/plain; charset=utf-8");
    head.headers.push("Content-Length", body.len().to_string());
    head.headers.push("Cache-Control", "no-store");
    if let Some(via) = via {
        head.headers.push("Via", via);
    }
    (head, body)
}

impl From<crate::http::wire::HeadError> for ProxyError {
    fn from(e: crate::http::wire::HeadError) -> Self {
        use crate::http::wire::HeadError as H;
        match e {
            H::Timeout { .. } => ProxyError::HeaderTimeout,
            H::TooLarge(n) => ProxyError::HeadersTooLarge(n),
            H::UriTooLong(n) => ProxyError::UriTooLong(n),
            H::Malformed(why) => ProxyError::BadRequest(why),
            H::Closed | H::Incomplete => {
                ProxyError::BadRequest("the connection closed in the middle of the request".into())
            }
            H::Io(e) => ProxyError::BadRequest(format!("reading the request failed: {e}")),
        }
    }
}
