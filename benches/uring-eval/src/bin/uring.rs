//! monoio (io_uring), thread per core: 2 threads, each with its own SO_REUSEPORT listener and
//! runtime; otherwise the same logic as epoll.rs.
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use uring_eval::*;

/// Reads what `stream` has into `buf` (through `chunk`, owned by the ring while it reads);
/// false at its end.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let (r, c) = stream.read(std::mem::take(chunk)).await;
    *chunk = c;
    let n = r?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

async fn serve(mut client: TcpStream, upstream: String) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream.as_str()).await?;
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
        let (r, o) = up.write_all(out).await;
        out = o;
        r?;
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
        rbuf.truncate(total);
        let (r, b) = client.write_all(rbuf).await;
        rbuf = b;
        r?;
    }
}

fn main() {
    let listen: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:3151".into())
        .parse()
        .unwrap();
    let upstream = std::env::args().nth(2).unwrap_or("127.0.0.1:18080".into());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let opts = monoio::net::ListenerOpts::new()
                        .reuse_port(true)
                        .reuse_addr(true);
                    let l = TcpListener::bind_with_config(listen, &opts).unwrap();
                    loop {
                        let (c, _) = l.accept().await.unwrap();
                        let u = upstream.clone();
                        monoio::spawn(async move {
                            let _ = serve(c, u).await;
                        });
                    }
                });
            })
        })
        .collect();
    println!("uring listening on {listen}");
    for t in threads {
        t.join().unwrap();
    }
}
