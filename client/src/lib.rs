//! proxylab's client, as a library: fetch URLs, echo, chat and load, directly or through
//! a proxy.
//!
//! HTTP goes through hyper, a client independent of the proxy's own HTTP code, so what it
//! reports is a second opinion on what the proxy sent. Through a proxy, `http://` URLs are
//! sent in absolute-form; `https://` URLs, the echo server and the chat room are reached
//! through a `CONNECT` tunnel ([`net::connect`]).
//!
//! - [`get`]: one request, timed (connect, first byte, total).
//! - [`echo`]: bytes to the echo server and back.
//! - [`chat`]: an interactive chat-room session.
//! - [`load`]: many concurrent keep-alive clients, with a latency histogram.

#![forbid(unsafe_code)]

pub mod load;
pub mod net;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

pub use net::NetError;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not an http:// or https:// URL with a host")]
    BadUrl(String),
    #[error("https:// needs --cacert FILE (origin-sim writes its CA with --ca-out)")]
    NeedCa,
    #[error(transparent)]
    Net(#[from] NetError),
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
    /// Time to open the connection (with the tunnel and TLS handshake, if any).
    pub connect: Duration,
    /// Time from start until the response head arrived.
    pub first_byte: Duration,
    /// Time from start until the whole body arrived.
    pub total: Duration,
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone)]
pub struct Url {
    pub https: bool,
    /// `host:port` (IPv6 hosts in brackets).
    pub authority: String,
    pub host: String,
    pub path: String,
    pub uri: hyper::Uri,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, FetchError> {
        let bad = || FetchError::BadUrl(url.to_string());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad()),
        };
        let auth = uri.authority().ok_or_else(bad)?;
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = auth.host().to_string();
        Ok(Url {
            https,
            authority: format!("{host}:{port}"),
            host,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
            uri,
        })
    }

    /// The request-target to send: absolute-form to a proxy (plain HTTP), else origin-form.
    fn target(&self, proxied_plain: bool) -> String {
        if proxied_plain {
            self.uri.to_string()
        } else {
            self.path.clone()
        }
    }
}

/// Fetches `url` with GET, directly or through `proxy` (`host:port` of an HTTP proxy);
/// `https://` needs `cacert`, the CA to trust.
pub async fn get(
    url: &str,
    proxy: Option<&str>,
    cacert: Option<&Path>,
) -> Result<Fetched, FetchError> {
    let url = Url::parse(url)?;
    let start = Instant::now();
    if url.https {
        let config = net::tls_config(cacert.ok_or(FetchError::NeedCa)?)?;
        let stream = net::connect(&url.authority, proxy).await?;
        let stream = net::tls(stream, &url.host, config).await?;
        send_get(stream, &url, url.target(false), start).await
    } else {
        let stream = net::dial(proxy.unwrap_or(&url.authority)).await?;
        send_get(stream, &url, url.target(proxy.is_some()), start).await
    }
}

async fn send_get<S>(
    stream: S,
    url: &Url,
    target: String,
    start: Instant,
) -> Result<Fetched, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connect = start.elapsed();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let host = url
        .uri
        .authority()
        .map_or(url.authority.as_str(), |a| a.as_str());
    let request = hyper::Request::get(target)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("proxylab-client/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let first_byte = start.elapsed();
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Fetched {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
        connect,
        first_byte,
        total: start.elapsed(),
    })
}

/// Sends `data` to the echo server at `server` (`host:port`), closes the sending side,
/// and returns everything that came back.
pub async fn echo(server: &str, proxy: Option<&str>, data: &[u8]) -> Result<Vec<u8>, NetError> {
    let stream = net::connect(server, proxy).await?;
    let (mut read, mut write) = tokio::io::split(stream);
    let send = async {
        write.write_all(data).await?;
        write.shutdown().await
    };
    let mut back = Vec::new();
    let (sent, received) = tokio::join!(send, read.read_to_end(&mut back));
    sent?;
    received?;
    Ok(back)
}

/// A chat session: lines from `input` go to the room; the room's lines go to `output`.
/// `name` is sent first as `/name NAME`. Ends when the room closes the connection, or
/// after `input` ends or says `!DISCONNECT` (which is sent on, so the room says goodbye).
pub async fn chat<I, O>(
    server: &str,
    proxy: Option<&str>,
    name: Option<&str>,
    input: I,
    mut output: O,
) -> Result<(), NetError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let stream = net::connect(server, proxy).await?;
    let (read, mut write) = tokio::io::split(stream);
    if let Some(name) = name {
        write
            .write_all(format!("/name {name}\n").as_bytes())
            .await?;
    }
    let mut from_room = tokio::io::BufReader::new(read).lines();
    let mut from_user = input.lines();
    let mut user_done = false;
    loop {
        tokio::select! {
            line = from_room.next_line() => match line? {
                Some(line) => {
                    output.write_all(line.as_bytes()).await?;
                    output.write_all(b"\n").await?;
                    output.flush().await?;
                }
                None => return Ok(()),
            },
            line = from_user.next_line(), if !user_done => match line? {
                Some(line) => {
                    write.write_all(line.as_bytes()).await?;
                    write.write_all(b"\n").await?;
                    if line.trim() == "!DISCONNECT" || line.trim() == "/quit" {
                        user_done = true;
                    }
                }
                None => {
                    write.write_all(b"!DISCONNECT\n").await?;
                    user_done = true;
                }
            },
        }
    }
}
