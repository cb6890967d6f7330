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
