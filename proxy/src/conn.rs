//! A client connection: accepting it, its two halves, and writing a response the proxy
//! made itself on it.
//!
//! Every stage that talks to the client takes a [`ClientConn`]; what it returns says
//! whether the connection may carry another request ([`Next`]).

use crate::http::wire::{Headers, Reader, ResponseHead, Version};
use crate::observe::capture::{TapRead, TapWrite};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

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

/// Accepts the next connection. Accept errors (out of file descriptors, say) are logged and
/// retried after a short pause, so a burst of them never ends the server.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What was written to the client: the response head's bytes and its body's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub head: u64,
    pub body: u64,
}

/// Writes a complete response the proxy made itself.
pub async fn respond(
    conn: &mut ClientConn,
    client_version: Version,
    mut res: ResponseHead,
    body: &[u8],
    next: Next,
) -> std::io::Result<Sent> {
    set_connection(&mut res.headers, client_version, next);
    let mut out = Vec::with_capacity(256 + body.len());
    res.write_to(&mut out);
    let head = out.len() as u64;
    out.extend_from_slice(body);
    conn.writer.write_all(&out).await?;
    Ok(Sent {
        head,
        body: body.len() as u64,
    })
}

/// `Connection: close` when the connection ends; `keep-alive` for HTTP/1.0 clients that stay.
pub fn set_connection(headers: &mut Headers, client_version: Version, next: Next) {
    match (next, client_version) {
        (Next::Close, _) => headers.set("Connection", "close"),
        (Next::KeepAlive, Version::Http10) => headers.set("Connection", "keep-alive"),
        (Next::KeepAlive, Version::Http11) => {}
    }
}
