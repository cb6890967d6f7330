//! Reverse mode: origin-form requests go to the `--upstream` servers in turn, keep their
//! Host, skip an upstream that refuses connections, and use the same cache.

use crate::support::{authority, Client, Response};
use proxy::http::target::Authority;

async fn origin_form(proxy: &proxy::Handle, path: &str, host: &str) -> Response {
    let mut client = Client::connect(proxy.addr()).await;
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
        .await;
    client.read("GET").await
}

/// Two origin-sims, and a proxy in reverse mode in front of both.
async fn two_upstreams() -> (origin_sim::Handle, origin_sim::Handle, proxy::Handle) {
    let a = origin_sim::start(origin_sim::Config::default())
        .await
        .unwrap();
    let b = origin_sim::start(origin_sim::Config::default())
        .await
        .unwrap();
    let mut config = proxy::Config::for_tests();
    config.upstreams = vec![authority(a.addr()), authority(b.addr())];
    (a, b, proxy::start(config).await.unwrap())
}

#[tokio::test]
async fn upstreams_take_turns_and_the_host_is_kept() {
    let (a, b, proxy) = two_upstreams().await;
    for i in 0..4 {
        let res = origin_form(&proxy, &format!("/bytes/{i}"), "site.test").await;
        assert_eq!(res.head.status, 200);
        assert_eq!(res.body.len(), i);
    }
    assert_eq!((a.origin().requests(), b.origin().requests()), (2, 2));
    let res = origin_form(&proxy, "/headers", "site.test").await;
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(json["headers"][0], serde_json::json!(["Host", "site.test"]));
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_refuses_is_passed_over() {
    let live = origin_sim::start(origin_sim::Config::default())
        .await
        .unwrap();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = proxy::Config::for_tests();
    config.upstreams = vec![
        Authority {
            host: "127.0.0.1".into(),
            port: dead_port,
        },
        authority(live.addr()),
    ];
    let proxy = proxy::start(config).await.unwrap();
    for _ in 0..3 {
        let res = origin_form(&proxy, "/bytes/3", "site.test").await;
        assert_eq!(res.head.status, 200, "{}", res.text());
    }
    assert_eq!(live.origin().requests(), 3);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn reverse_mode_uses_the_cache() {
    let (a, b, proxy) = two_upstreams().await;
    origin_form(&proxy, "/cache/60", "site.test").await;
    let second = origin_form(&proxy, "/cache/60", "site.test").await;
    assert_eq!(
        second.header("cache-status").as_deref(),
        Some("proxylab; hit")
    );
    assert_eq!(a.origin().requests() + b.origin().requests(), 1);
    proxy.shutdown().await.unwrap();
}

/// RFC 9213 in reverse mode: `CDN-Cache-Control` rules this cache (stored despite
/// Cache-Control: no-store) and stops here — neither the miss nor the hit carries it,
/// while Cache-Control goes on to the browser unchanged.
#[tokio::test]
async fn targeted_fields_rule_the_cache_and_stop_at_it() {
    let (a, b, proxy) = two_upstreams().await;
    let path = "/response-headers?Cache-Control=no-store&CDN-Cache-Control=max-age%3D60";
    let miss = origin_form(&proxy, path, "site.test").await;
    let hit = origin_form(&proxy, path, "site.test").await;
    assert_eq!(hit.header("cache-status").as_deref(), Some("proxylab; hit"));
    for res in [&miss, &hit] {
        assert_eq!(res.header("cdn-cache-control"), None);
        assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    }
    assert_eq!(a.origin().requests() + b.origin().requests(), 1);
    proxy.shutdown().await.unwrap();
}
