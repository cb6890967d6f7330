//! Many clients at once, and graceful shutdown.

use crate::support::{eventually, get, Bench, Client};
use std::sync::Arc;

/// 100 clients at once, each with its own connection, are all served completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_clients_are_all_served() {
    let bench = Arc::new(Bench::start().await);
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let bench = bench.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = bench.connect().await;
            let mut total = 0;
            for j in 0..3 {
                let n = 1000 + i * 10 + j;
                let res = client.get(&bench.url(&format!("/bytes/{n}"))).await;
                assert_eq!(
                    res.body,
                    origin_sim::seeded_body(origin_sim::DEFAULT_SEED, n)
                );
                total += 1;
            }
            total
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    assert_eq!(served, 300);
    assert_eq!(bench.origin.origin().requests(), 300);
}

/// Requests overlap in the proxy: while one client's response is held by a slow origin,
/// another client's request goes through (the origin sees it before the first ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_does_not_block_other_clients() {
    let bench = Arc::new(Bench::start().await);
    let slow = {
        let bench = bench.clone();
        tokio::spawn(async move { get(&bench.proxy, &bench.url("/drip/40?ms=50")).await })
    };
    eventually("the slow request to reach the origin", || {
        bench.hits("/drip/40?ms=50") == 1
    })
    .await;
    let quick = get(&bench.proxy, &bench.url("/bytes/7")).await;
    assert_eq!(quick.body.len(), 7);
    assert!(!slow.is_finished(), "the slow response was still in flight");
    assert_eq!(slow.await.unwrap().body.len(), 40);
}

/// On shutdown the proxy stops accepting, finishes the request in flight, then returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let bench = Bench::start().await;
    let proxy_addr = bench.proxy.addr();
    let url = bench.url("/drip/20?ms=25");
    let mut client = bench.connect().await;
    client.send(format!("GET {url} HTTP/1.1\r\n\r\n")).await;
    let origin = bench.origin.origin().clone();
    eventually("the request to reach the origin", || {
        origin.hits("/drip/20?ms=25") == 1
    })
    .await;
    let Bench {
        origin: origin_handle,
        proxy,
    } = bench;
    let stopping = tokio::spawn(proxy.shutdown());
    let res = client.read("GET").await;
    assert_eq!(
        res.body,
        origin_sim::seeded_body(origin_sim::DEFAULT_SEED, 20)
    );
    assert!(
        client.closed().await,
        "the connection closes once its response is complete"
    );
    stopping.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(proxy_addr).await.is_err(),
        "no longer accepting"
    );
    origin_handle.shutdown().await;
}

/// --max-clients: beyond the limit a connection waits; it is served once a slot frees.
/// The first client holds the only slot with a response the origin keeps at a gate; the
/// second connects and sends its request meanwhile. The order in which the origin saw the
/// requests is the proof: the second one arrives after everything the first connection
/// sent, however long the first held its slot (a proxy that served both at once forwards
/// the second while the first waits at the gate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_limit_wait_for_a_slot() {
    let bench = Bench::with(|c| c.max_clients = 1).await;
    let origin = bench.origin.origin();
    let mut first = bench.connect().await;
    first
        .send(format!(
            "GET {} HTTP/1.1\r\n\r\n",
            bench.url("/gate/slot?cc=no-store")
        ))
        .await;
    eventually("the first client's request at the origin", || {
        bench.hits("/gate/slot?cc=no-store") == 1
    })
    .await;
    // Accepted by the kernel (connect returns), not served while the only slot is taken.
    let mut second = Client::connect(bench.proxy.addr()).await;
    second
        .send(format!("GET {} HTTP/1.1\r\n\r\n", bench.url("/bytes/2")))
        .await;
    origin.open_gate("slot");
    assert_eq!(first.read("GET").await.head.status, 200);
    // Still the first connection's slot: a request on it goes first.
    assert_eq!(first.get(&bench.url("/bytes/3")).await.head.status, 200);
    drop(first);
    let b = second.read("GET").await;
    assert_eq!(b.body.len(), 2);
    drop(second);
    let order: Vec<String> = origin.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        order,
        ["/gate/slot?cc=no-store", "/bytes/3", "/bytes/2"],
        "the second client was served while the first held the only slot"
    );
    bench.stop().await;
}
