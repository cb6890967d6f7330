//! The TCP echo server: every byte a client sends comes straight back, until it closes.

use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Serves echo connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            conn = proxy::conn::accept(&listener) => conn,
            _ = &mut shutdown => return Ok(()),
        };
        tokio::spawn(async move {
            match echo(stream).await {
                Ok(n) => tracing::debug!("echo: {peer} sent {n} bytes"),
                Err(e) => tracing::debug!("echo: {peer}: {e}"),
            }
        });
    }
}

async fn echo(stream: TcpStream) -> io::Result<u64> {
    let (mut read, mut write) = stream.into_split();
    let n = tokio::io::copy(&mut read, &mut write).await?;
    write.shutdown().await?;
    Ok(n)
}
