//! Responses the proxy makes itself, rather than relaying: its status page for
//! origin-form requests, `OPTIONS *`, OPTIONS and TRACE whose `Max-Forwards` reached 0,
//! and the common ending of them all ([`finish`]: drain the request body, then answer).

use crate::conn::{self, ClientConn, Next};
use crate::error::error_page;
use crate::http::wire::{self, Framing, RequestHead, ResponseHead};
use crate::request::{Failure, RequestContext};

/// The methods the proxy forwards, for `Allow`.
pub const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE";

/// OPTIONS answered by the proxy itself (`OPTIONS *`, or `Max-Forwards: 0`): what it supports.
pub async fn options(
    conn: &mut ClientConn,
    head: &RequestHead,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    let mut res = ResponseHead::new(200, "OK");
    res.headers.push("Allow", ALLOWED);
    res.headers.push("Content-Length", "0");
    ctx.status = 200;
    finish(conn, head, framing, res, b"", ctx).await
}

/// Answers OPTIONS or TRACE whose Max-Forwards reached 0: the proxy is the final recipient.
pub async fn max_forwards(
    conn: &mut ClientConn,
    head: RequestHead,
    framing: Framing,
    ctx: &mut RequestContext,
) -> Result<Next, Failure> {
    if head.method == "OPTIONS" {
        return options(conn, &head, framing, ctx).await;
    }
    ctx.status = 200;
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
    finish(conn, &head, framing, res, &body, ctx).await
}

/// The page the proxy serves about itself for origin-form requests.
pub async fn status_page(
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
    finish(conn, head, framing, res, body.as_bytes(), ctx).await
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
pub async fn finish(
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
    let sent = conn::respond(conn, head.version, res, body, next)
        .await
        .map_err(|e| Failure::Abort(format!("writing the response failed: {e}")))?;
    ctx.sent(sent);
    Ok(next)
}
