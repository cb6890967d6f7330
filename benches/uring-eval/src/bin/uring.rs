//! monoio (io_uring), thread per core: 2 threads, each with its own SO_REUSEPORT listener and
//! runtime; otherwise the same logic as epoll.rs.
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use uring_eval::*;

async fn serve(mut client: TcpStream, upstream: String) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream.as_str()).await?;
    up.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    let mut rbuf: Vec<u8> = Vec::with_capacity(16384);
    let mut chunk = vec![0u8; 65536];
    loop {
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            let (r, c) = client.read(chunk).await;
            chunk = c;
            let n = r?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        out.clear();
        origin_form(&buf[..end], &mut out);
        buf.drain(..end);
        let (r, o) = up.write_all(out).await;
        out = o;
        r?;
        rbuf.clear();
        let hend = loop {
            if let Some(e) = head_end(&rbuf) {
                break e;
            }
            let (r, c) = up.read(chunk).await;
            chunk = c;
            let n = r?;
            if n == 0 {
                return Ok(());
            }
            rbuf.extend_from_slice(&chunk[..n]);
        };
        let total = hend + content_length(&rbuf[..hend]);
        while rbuf.len() < total {
            let (r, c) = up.read(chunk).await;
            chunk = c;
            let n = r?;
            if n == 0 {
                return Ok(());
            }
            rbuf.extend_from_slice(&chunk[..n]);
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
