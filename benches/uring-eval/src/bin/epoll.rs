//! tokio (epoll), multi-thread runtime with 2 workers: one task per client connection, one
//! upstream connection per client connection, kept alive.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uring_eval::*;

async fn serve(mut client: TcpStream, upstream: String) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(&upstream).await?;
    up.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    let mut rbuf = Vec::with_capacity(16384);
    loop {
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        out.clear();
        origin_form(&buf[..end], &mut out);
        buf.drain(..end);
        up.write_all(&out).await?;
        rbuf.clear();
        let hend = loop {
            if let Some(e) = head_end(&rbuf) {
                break e;
            }
            let mut chunk = [0u8; 16384];
            let n = up.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            rbuf.extend_from_slice(&chunk[..n]);
        };
        let total = hend + content_length(&rbuf[..hend]);
        while rbuf.len() < total {
            let mut chunk = vec![0u8; (total - rbuf.len()).min(1 << 16)];
            let n = up.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            rbuf.extend_from_slice(&chunk[..n]);
        }
        client.write_all(&rbuf[..total]).await?;
    }
}

fn main() {
    let listen = std::env::args().nth(1).unwrap_or("127.0.0.1:3150".into());
    let upstream = std::env::args().nth(2).unwrap_or("127.0.0.1:18080".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = TcpListener::bind(&listen).await.unwrap();
        println!("epoll listening on {listen}");
        loop {
            let (c, _) = l.accept().await.unwrap();
            let u = upstream.clone();
            tokio::spawn(async move {
                let _ = serve(c, u).await;
            });
        }
    });
}
