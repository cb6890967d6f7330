//! proxylab's client, as a library: fetch a URL directly or through a proxy, and time it.
//!
//! It uses hyper, a client independent of the proxy's own HTTP code, so that what it
//! reports is a second opinion on what the proxy sent. `get` is here now; `echo`, `chat`
//! and `load` (many concurrent clients with latency percentiles) arrive with issue 3.

#![forbid(unsafe_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not an http:// URL with a host")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// What a fetch returned, with its timings.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// Time to open the TCP connection.
    pub connect: Duration,
    /// Time from start until the response head arrived.
    pub first_byte: Duration,
    /// Time from start until the whole body arrived.
    pub total: Duration,
}

/// Fetches `url` with GET, directly or through `proxy` (host:port of an HTTP proxy).
pub async fn get(url: &str, proxy: Option<&str>) -> Result<Fetched, FetchError> {
    let uri: hyper::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::BadUrl(url.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::BadUrl(url.into()))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let dial = match proxy {
        Some(p) => p.to_string(),
        None => format!("{}:{port}", authority.host()),
    };
    let start = Instant::now();
    let stream = connect(&dial).await?;
    let connect_time = start.elapsed();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    // Through a proxy the request line carries the absolute URL; directly, only the path.
    let target = match proxy {
        Some(_) => uri.to_string(),
        None => uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
    };
    let request = hyper::Request::get(target)
        .header(hyper::header::HOST, authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("proxylab-client/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())?;
    let response: hyper::Response<Incoming> = sender.send_request(request).await?;
    let first_byte = start.elapsed();
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Fetched {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
        connect: connect_time,
        first_byte,
        total: start.elapsed(),
    })
}

async fn connect(addr: &str) -> Result<TcpStream, FetchError> {
    let stream = match addr.parse::<SocketAddr>() {
        Ok(sock) => TcpStream::connect(sock).await,
        Err(_) => TcpStream::connect(addr).await,
    };
    let stream = stream.map_err(|source| FetchError::Connect {
        addr: addr.to_string(),
        source,
    })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
