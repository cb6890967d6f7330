//! Connection reuse on both sides, proven by which upstream connection served each
//! request (`X-Origin-Conn`) and how many the origin accepted.

use crate::support::{Bench, Client};

/// A warmed-up client doing sequential requests opens no new upstream connection.
#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    let mut conns = Vec::new();
    for i in 0..20 {
        let res = client.get(&bench.url(&format!("/bytes/{i}"))).await;
        assert_eq!(res.head.status, 200);
        conns.push(res.header("x-origin-conn").unwrap());
    }
    assert!(
        conns.iter().all(|c| c == &conns[0]),
        "upstream connections used: {conns:?}"
    );
    assert_eq!(bench.origin.origin().connections(), 1);
    bench.stop().await;
}

/// The pool serves different clients: a second client after the first reuses its
/// upstream connection.
#[tokio::test]
async fn pooled_connection_serves_the_next_client() {
    let bench = Bench::start().await;
    let first = crate::support::get(&bench.proxy, &bench.url("/bytes/5")).await;
    let second = crate::support::get(&bench.proxy, &bench.url("/bytes/6")).await;
    assert_eq!(
        first.header("x-origin-conn"),
        second.header("x-origin-conn")
    );
    assert_eq!(bench.origin.origin().connections(), 1);
    bench.stop().await;
}

/// A close-delimited response cannot leave its upstream connection reusable; the next
/// request gets a new one, and the client's own connection stays open (chunked to it).
#[tokio::test]
async fn close_delimited_upstream_is_not_reused() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    let a = client.get(&bench.url("/close/10")).await;
    assert_eq!(a.header("transfer-encoding").as_deref(), Some("chunked"));
    let b = client.get(&bench.url("/bytes/10")).await;
    assert_ne!(a.header("x-origin-conn"), b.header("x-origin-conn"));
    bench.stop().await;
}

/// When the origin closes a pooled connection while it is idle, the next request is
/// sent again on a fresh connection instead of failing.
#[tokio::test]
async fn stale_pooled_connection_is_replaced() {
    let bench = Bench::start().await;
    let first = crate::support::get(&bench.proxy, &bench.url("/bytes/1")).await;
    assert_eq!(first.head.status, 200);
    // Restart the origin on the same port: every pooled connection is now dead.
    let addr = bench.origin.addr();
    let Bench { origin, proxy } = bench;
    origin.shutdown().await;
    let origin = origin_sim::start(origin_sim::Config {
        http: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    let res = Client::connect(proxy.addr())
        .await
        .get(&format!("{}/bytes/2", origin.url()))
        .await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.body.len(), 2);
    proxy.shutdown().await.unwrap();
    origin.shutdown().await;
}

/// HTTP/1.0 clients that ask for keep-alive get it; those that do not are closed.
#[tokio::test]
async fn http10_keep_alive_is_opt_in() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    let url = bench.url("/bytes/3");
    client
        .send(format!(
            "GET {url} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ))
        .await;
    let res = client.read("GET").await;
    assert_eq!(res.header("connection").as_deref(), Some("keep-alive"));
    client.send(format!("GET {url} HTTP/1.0\r\n\r\n")).await;
    let res = client.read("GET").await;
    assert_eq!(res.header("connection").as_deref(), Some("close"));
    assert!(client.closed().await);
    bench.stop().await;
}

/// A scripted origin: the `n`th connection it accepts (from 0) answers its requests with
/// `script(n, i)` for the `i`th request: `Some(bytes)` to send (then keep the connection),
/// or `None` to close without answering. It counts requests per connection, and notes a
/// request that arrives after a response whose body ended at the close (`after_close`).
struct ScriptedOrigin {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    after_close: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What a scripted connection does with a request.
#[derive(Clone, Copy)]
enum Answer {
    /// This response; the connection stays open.
    KeepAlive(&'static str),
    /// This response with no length, then FIN (the body ends at the close); the connection
    /// is still read, to see whether anything arrives after.
    CloseDelimited(&'static str),
    /// Close without answering.
    Drop,
}

impl ScriptedOrigin {
    async fn start(script: fn(usize, usize) -> Answer) -> ScriptedOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let after_close = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counts, flag) = (requests.clone(), after_close.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                counts.lock().unwrap().push(0);
                let (counts, flag, conn) = (counts.clone(), flag.clone(), n);
                n += 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut closed_body = false;
                    loop {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if closed_body {
                                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                            let i = {
                                let mut c = counts.lock().unwrap();
                                c[conn] += 1;
                                c[conn] - 1
                            };
                            match script(conn, i) {
                                Answer::KeepAlive(text) => {
                                    let _ = stream
                                        .write_all(
                                            format!(
                                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                                                text.len()
                                            )
                                            .as_bytes(),
                                        )
                                        .await;
                                }
                                Answer::CloseDelimited(text) => {
                                    let _ = stream
                                        .write_all(
                                            format!("HTTP/1.1 200 OK\r\n\r\n{text}").as_bytes(),
                                        )
                                        .await;
                                    let _ = stream.shutdown().await;
                                    closed_body = true;
                                }
                                Answer::Drop => return,
                            }
                        }
                    }
                });
            }
        });
        ScriptedOrigin {
            addr,
            requests,
            after_close,
        }
    }

    fn requests(&self) -> Vec<usize> {
        self.requests.lock().unwrap().clone()
    }
}

/// The one retry: a pooled connection that passes the idle check but is closed by the
/// origin when the next request arrives (no answer) gets that request sent once more, on
/// a new connection, and the client never sees the failure.
#[tokio::test]
async fn a_request_the_pooled_connection_dropped_is_sent_again_on_a_new_one() {
    let origin = ScriptedOrigin::start(|conn, i| match (conn, i) {
        (0, 0) => Answer::KeepAlive("first"),
        (0, _) => Answer::Drop,
        _ => Answer::KeepAlive("second"),
    })
    .await;
    let proxy = proxy::start(proxy::Config::for_tests()).await.unwrap();
    let url = format!("http://{}/x", origin.addr);
    let a = crate::support::get(&proxy, &url).await;
    assert_eq!(a.text(), "first");
    let b = crate::support::get(&proxy, &url).await;
    assert_eq!(b.head.status, 200, "{}", b.text());
    assert_eq!(b.text(), "second");
    // Request 2 went to the pooled connection first (which dropped it), then to a new one.
    assert_eq!(origin.requests(), vec![2, 1]);
    proxy.shutdown().await.unwrap();
}

/// A response whose body ends at the close leaves no reusable connection: the next request
/// goes on a new one, and nothing is ever sent on the old one after that body (whatever a
/// retry would hide).
#[tokio::test]
async fn an_upstream_is_never_reused_after_a_close_delimited_body() {
    let origin = ScriptedOrigin::start(|conn, _| match conn {
        0 => Answer::CloseDelimited("until-the-close"),
        _ => Answer::KeepAlive("fresh"),
    })
    .await;
    let proxy = proxy::start(proxy::Config::for_tests()).await.unwrap();
    let url = format!("http://{}/x", origin.addr);
    let mut client = Client::connect(proxy.addr()).await;
    let a = client.get(&url).await;
    assert_eq!(a.text(), "until-the-close");
    // Not even put back in the pool (where only the idle check would stop its reuse).
    assert_eq!(proxy.shared().upstreams.idle_count(), 0);
    let b = client.get(&url).await;
    assert_eq!(b.text(), "fresh");
    assert_eq!(proxy.shared().upstreams.idle_count(), 1);
    assert!(
        !origin.after_close.load(std::sync::atomic::Ordering::SeqCst),
        "a request was sent on the connection whose body ended at its close"
    );
    assert_eq!(origin.requests(), vec![1, 1]);
    drop(client);
    proxy.shutdown().await.unwrap();
}
