//! Every method and every body framing passes through the proxy byte-exact.

use crate::support::{get, Bench, Client};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

/// Encodes `body` as chunked with the given chunk sizes (cycled), as a client might.
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend(format!("{n:x}\r\n").as_bytes());
        out.extend(&rest[..n]);
        out.extend(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend(b"0\r\n\r\n");
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Request bodies of any size, sent with Content-Length or chunked in any chunk sizes,
/// by any method with a body, arrive at the origin exactly (it echoes them back).
#[test]
fn request_bodies_arrive_byte_exact_in_every_framing() {
    let rt = runtime();
    let bench = rt.block_on(Bench::start());
    let url = bench.url("/echo");
    let mut runner = TestRunner::new(PropConfig {
        cases: 48,
        ..PropConfig::default()
    });
    let strategy = (
        prop::sample::select(vec!["POST", "PUT", "PATCH", "DELETE"]),
        prop::collection::vec(any::<u8>(), 0..200_000),
        prop::option::of(prop::collection::vec(1usize..70_000, 1..6)),
    );
    runner
        .run(&strategy, |(method, body, chunking)| {
            rt.block_on(async {
                let mut client = bench.connect().await;
                let mut request = format!(
                    "{method} {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-test\r\n"
                );
                let wire_body = match &chunking {
                    Some(sizes) => {
                        request.push_str("Transfer-Encoding: chunked\r\n\r\n");
                        chunked(&body, sizes)
                    }
                    None => {
                        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                        body.clone()
                    }
                };
                client.send(request).await;
                client.send(&wire_body).await;
                let res = client.read(method).await;
                prop_assert_eq!(res.head.status, 200);
                prop_assert_eq!(
                    res.header("content-type"),
                    Some("application/x-test".to_string())
                );
                prop_assert!(
                    res.body == body,
                    "echoed body differs ({} vs {} bytes)",
                    res.body.len(),
                    body.len()
                );
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(bench.stop());
}

/// Response bodies with Content-Length, chunked (any chunk size) or close-delimited
/// reach HTTP/1.1 and HTTP/1.0 clients byte-exact.
#[test]
fn response_bodies_arrive_byte_exact_in_every_framing() {
    let rt = runtime();
    let bench = rt.block_on(Bench::start());
    let mut runner = TestRunner::new(PropConfig {
        cases: 48,
        ..PropConfig::default()
    });
    let strategy = (
        0u64..300_000,
        prop::sample::select(vec!["bytes", "chunked", "close"]),
        prop::option::of(1u64..50_000),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(n, route, chunk, http10)| {
            rt.block_on(async {
                let path = match (route, chunk) {
                    ("chunked", Some(k)) => format!("/chunked/{n}?chunk={k}"),
                    _ => format!("/{route}/{n}"),
                };
                let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
                let mut client = bench.connect().await;
                client
                    .send(format!("GET {} {version}\r\n\r\n", bench.url(&path)))
                    .await;
                let res = client.read("GET").await;
                prop_assert_eq!(res.head.status, 200);
                let expected = origin_sim::seeded_body(origin_sim::DEFAULT_SEED, n);
                prop_assert!(
                    res.body == expected,
                    "{} differs: got {} bytes",
                    path,
                    res.body.len()
                );
                if http10 {
                    prop_assert!(
                        res.header("transfer-encoding").is_none(),
                        "HTTP/1.0 clients never get chunked"
                    );
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(bench.stop());
}

/// Every method reaches the origin as sent, and HEAD gets headers without a body.
#[tokio::test]
async fn every_method_reaches_the_origin() {
    let bench = Bench::start().await;
    for method in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ] {
        let mut client = bench.connect().await;
        client
            .send(format!(
                "{method} {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                bench.url("/headers")
            ))
            .await;
        let res = client.read(method).await;
        assert_eq!(res.head.status, 200, "{method}");
        if method == "HEAD" {
            assert!(res.body.is_empty());
            assert!(
                res.header("content-length").is_some(),
                "HEAD keeps Content-Length"
            );
        } else {
            let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
            assert_eq!(json["method"], method);
            assert_eq!(json["target"], "/headers", "sent upstream in origin-form");
        }
    }
    assert_eq!(bench.hits("/headers"), 8);
    bench.stop().await;
}

/// A standard client library (hyper) reads every response framing through the proxy,
/// so the proxy's output is valid HTTP/1.1 by more than its own parser's standard.
#[tokio::test]
async fn hyper_reads_every_framing_through_the_proxy() {
    use http_body_util::{BodyExt, Empty};
    let bench = Bench::start().await;
    let stream = tokio::net::TcpStream::connect(bench.proxy.addr())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in [
        "/bytes/70000",
        "/chunked/70000?chunk=333",
        "/close/70000",
        "/status/204",
        "/bytes/0",
    ] {
        let req = hyper::Request::get(bench.url(path))
            .header("Host", bench.origin.addr().to_string())
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let n = path
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .split('?')
            .next()
            .unwrap();
        let expected = match status {
            204 => Vec::new(),
            _ => origin_sim::seeded_body(origin_sim::DEFAULT_SEED, n.parse().unwrap()),
        };
        assert!(body[..] == expected[..], "{path}: {} bytes", body.len());
    }
    bench.stop().await;
}

/// Pipelined requests (sent back to back before reading) are answered in order.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    let mut burst = String::new();
    for n in [3, 1, 2] {
        burst.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            bench.url(&format!("/bytes/{n}"))
        ));
    }
    client.send(burst).await;
    for n in [3, 1, 2] {
        let res = client.read("GET").await;
        assert_eq!(res.body.len(), n);
    }
    bench.stop().await;
}

/// `Expect: 100-continue` gets the origin's 100 relayed before the body is sent.
#[tokio::test]
async fn expect_continue_is_relayed() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            bench.url("/echo")
        ))
        .await;
    let interim = client.read("POST").await;
    assert_eq!(interim.head.status, 100);
    client.send("hello").await;
    let res = client.read("POST").await;
    assert_eq!(res.body, b"hello");
    bench.stop().await;
}

/// The proxy answers an origin-form request for `/` with its own status page.
#[tokio::test]
async fn status_page_at_slash() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client.send("GET / HTTP/1.1\r\nHost: proxy\r\n\r\n").await;
    let res = client.read("GET").await;
    assert_eq!(res.head.status, 200);
    assert!(res.text().contains("curl -x"), "{}", res.text());
    let other = get(&bench.proxy, "/elsewhere").await;
    assert_eq!(other.head.status, 404);
    assert_eq!(bench.origin.origin().requests(), 0);
    bench.stop().await;
}

/// A 64 MiB body streams through without the proxy holding it (flat memory is what
/// the benchmark measures; here: it arrives whole and exact).
#[tokio::test]
async fn large_body_streams_through() {
    let bench = Bench::start().await;
    let n = 64 << 20;
    let mut client: Client = bench.connect().await;
    let res = client.get(&bench.url(&format!("/bytes/{n}"))).await;
    assert_eq!(res.body.len(), n);
    assert!(res.body == origin_sim::seeded_body(origin_sim::DEFAULT_SEED, n as u64));
    bench.stop().await;
}
