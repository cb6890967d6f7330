//! tokio (epoll), multi-thread runtime with 2 workers: one task per client connection, one
//! upstream connection per client connection, kept alive.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uring_eval::*;

/// Reads what `stream` has into `buf` (through `chunk`); false at its end.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::io::Result<bool> {
    let n = stream.read(chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

async fn serve(mut client: TcpStream, upstream: String) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(&upstream).await?;
    up.set_nodelay(true)?;
    let (mut buf, mut out, mut rbuf) = (Vec::new(), Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 65536];
    loop {
        let end = loop {
            match head_end(&buf) {
                Some(end) => break end,
                None if read_more(&mut client, &mut buf, &mut chunk).await? => {}
                None => return Ok(()),
            }
        };
        out.clear();
        origin_form(&buf[..end], &mut out);
        buf.drain(..end);
        up.write_all(&out).await?;
        rbuf.clear();
        let mut total = usize::MAX;
        while rbuf.len() < total {
            if total == usize::MAX {
                if let Some(end) = head_end(&rbuf) {
                    total = end + content_length(&rbuf[..end]);
                    continue;
                }
            }
            if !read_more(&mut up, &mut rbuf, &mut chunk).await? {
                return Ok(());
            }
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
