//! Reaching a server, directly or through an HTTP proxy's CONNECT tunnel, and TLS on top.

use proxy::http::wire::{Limits, Reader};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the proxy refused the tunnel to {target}: {status} {reason}")]
    TunnelRefused {
        target: String,
        status: u16,
        reason: String,
    },
    #[error("the proxy's answer to CONNECT was not HTTP: {0}")]
    BadProxyAnswer(String),
    #[error("cannot read the CA certificate {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A TCP stream, plus bytes already read from it (after a CONNECT answer) that must be
/// delivered first.
#[derive(Debug)]
pub struct Stream {
    inner: TcpStream,
    ahead: bytes::BytesMut,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens a TCP connection to `addr` (`host:port`).
pub async fn dial(addr: &str) -> Result<TcpStream, NetError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Reaches `target` (`host:port`): directly, or through `proxy` with `CONNECT`.
pub async fn connect(target: &str, proxy: Option<&str>) -> Result<Stream, NetError> {
    let Some(proxy) = proxy else {
        return Ok(Stream {
            inner: dial(target).await?,
            ahead: bytes::BytesMut::new(),
        });
    };
    let mut stream = dial(proxy).await?;
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reader = Reader::new(stream);
    let head = reader
        .read_response_head(Limits::default(), None)
        .await
        .map_err(|e| NetError::BadProxyAnswer(e.to_string()))?;
    if !(200..300).contains(&head.status) {
        return Err(NetError::TunnelRefused {
            target: target.to_string(),
            status: head.status,
            reason: head.reason,
        });
    }
    let (inner, ahead) = reader.into_parts();
    Ok(Stream { inner, ahead })
}

/// A TLS client configuration that trusts exactly the CA certificates in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let pem = std::fs::read(ca_file).map_err(|e| NetError::Ca {
        path: ca_file.display().to_string(),
        reason: e.to_string(),
    })?;
    tls_config_from_pem(&pem, &ca_file.display().to_string())
}

/// A TLS client configuration that trusts exactly the CA certificates in `pem`
/// (`source` names where they came from, for errors).
pub fn tls_config_from_pem(
    pem: &[u8],
    source: &str,
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let err = |reason: String| NetError::Ca {
        path: source.to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Speaks TLS over `stream` to `host`, verifying its certificate against `config`'s roots.
pub async fn tls<S>(
    stream: S,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<S>, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
        .map_err(|_| NetError::ServerName(host.to_string()))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|source| NetError::Tls {
            host: host.to_string(),
            source,
        })
}
