//! What the proxy changes in the header section, checked on what the origin received.

use crate::support::{Bench, Client};
use proxy::config::ForwardedFor;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A wiremock server that answers 200 to anything, and a proxy in front of it.
async fn mock_and_proxy(tweak: impl FnOnce(&mut proxy::Config)) -> (MockServer, proxy::Handle) {
    let mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Connection", "X-Upstream-Secret")
                .insert_header("X-Upstream-Secret", "hop")
                .insert_header("Keep-Alive", "timeout=5")
                .insert_header("X-Kept", "end-to-end")
                .set_body_string("ok"),
        )
        .mount(&mock)
        .await;
    let mut config = proxy::Config::for_tests();
    tweak(&mut config);
    (mock, proxy::start(config).await.unwrap())
}

async fn send(proxy: &proxy::Handle, request: String) -> crate::support::Response {
    let mut client = Client::connect(proxy.addr()).await;
    client.send(request).await;
    client.read("GET").await
}

/// Hop-by-hop fields (the standard ones and any named by Connection) never reach the
/// origin; end-to-end ones do, Host is set from the target, Via and X-Forwarded-For added.
#[tokio::test]
async fn request_hop_by_hop_headers_are_removed_and_via_added() {
    let (mock, proxy) = mock_and_proxy(|_| {}).await;
    let request = format!(
        "GET {}/path?q=1 HTTP/1.1\r\nHost: wrong.example\r\nConnection: keep-alive, X-Private\r\n\
         X-Private: secret\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Upgrade: websocket\r\nProxy-Authorization: Basic dTpw\r\nX-Forwarded-For: 192.0.2.1\r\n\
         X-End-To-End: kept\r\n\r\n",
        mock.uri()
    );
    let res = send(&proxy, request).await;
    assert_eq!(res.head.status, 200);
    let received = mock.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let h = &received[0].headers;
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the origin");
    }
    assert_eq!(h["x-end-to-end"], "kept");
    assert_eq!(
        h["host"],
        mock.address().to_string(),
        "Host comes from the target"
    );
    assert_eq!(h["via"], "1.1 proxylab");
    assert_eq!(h["x-forwarded-for"], "192.0.2.1, 127.0.0.1");
    assert_eq!(received[0].url.path(), "/path");
    assert_eq!(received[0].url.query(), Some("q=1"));

    // And on the way back: the response's hop-by-hop fields are removed, Via added.
    assert!(res.header("x-upstream-secret").is_none());
    assert!(res.header("keep-alive").is_none());
    assert_eq!(res.header("x-kept").as_deref(), Some("end-to-end"));
    assert_eq!(res.header("via").as_deref(), Some("1.1 proxylab"));
    proxy.shutdown().await.unwrap();
}

/// `--via-name`, `--no-via` and `--forwarded-for strip|off` do what they say.
#[tokio::test]
async fn via_and_forwarded_for_options() {
    let request = |uri: &str| format!("GET {uri}/ HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n");

    let (mock, proxy) = mock_and_proxy(|c| {
        c.via_name = "edge-7".into();
        c.forwarded_for = ForwardedFor::Strip;
    })
    .await;
    let res = send(&proxy, request(&mock.uri())).await;
    let got = &mock.received_requests().await.unwrap()[0];
    assert_eq!(got.headers["via"], "1.1 edge-7");
    assert!(got.headers.get("x-forwarded-for").is_none());
    assert_eq!(res.header("via").as_deref(), Some("1.1 edge-7"));

    let (mock, proxy) = mock_and_proxy(|c| {
        c.no_via = true;
        c.forwarded_for = ForwardedFor::Off;
    })
    .await;
    let res = send(&proxy, request(&mock.uri())).await;
    let got = &mock.received_requests().await.unwrap()[0];
    assert!(got.headers.get("via").is_none());
    assert_eq!(got.headers["x-forwarded-for"], "192.0.2.1");
    assert!(res.header("via").is_none());
}

/// An HTTP/1.0 client's request is sent on as HTTP/1.1 with `Via: 1.0 proxylab`.
#[tokio::test]
async fn http10_request_gets_via_1_0() {
    let (mock, proxy) = mock_and_proxy(|_| {}).await;
    let res = send(&proxy, format!("GET {}/ HTTP/1.0\r\n\r\n", mock.uri())).await;
    assert_eq!(res.head.status, 200);
    let got = &mock.received_requests().await.unwrap()[0];
    assert_eq!(got.headers["via"], "1.0 proxylab");
    assert_eq!(res.header("connection").as_deref(), Some("close"));
}

/// A request whose Via already names this proxy is a loop: 508, and nothing is sent.
#[tokio::test]
async fn via_loop_is_508() {
    let (mock, proxy) = mock_and_proxy(|_| {}).await;
    let res = send(
        &proxy,
        format!(
            "GET {}/ HTTP/1.1\r\nVia: 1.1 a, 1.1 proxylab\r\n\r\n",
            mock.uri()
        ),
    )
    .await;
    assert_eq!(res.head.status, 508);
    assert!(res.text().contains("loop"), "{}", res.text());
    assert!(mock.received_requests().await.unwrap().is_empty());
}

/// Header names keep their letter case and order on the way to the origin.
#[tokio::test]
async fn header_case_and_order_are_kept() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nx-lower: 1\r\nX-MiXeD-CaSe: 2\r\nX-UPPER: 3\r\n\r\n",
            bench.url("/headers")
        ))
        .await;
    let res = client.read("GET").await;
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let names: Vec<&str> = json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Host",
            "x-lower",
            "X-MiXeD-CaSe",
            "X-UPPER",
            "Via",
            "X-Forwarded-For"
        ]
    );
    bench.stop().await;
}

/// TRACE and OPTIONS with `Max-Forwards: 0` are answered by the proxy; with more, the
/// value is decremented on the way.
#[tokio::test]
async fn max_forwards_is_honoured() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "TRACE {} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nCookie: secret\r\nX-Probe: 1\r\n\r\n",
            bench.url("/headers")
        ))
        .await;
    let res = client.read("TRACE").await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.header("content-type").as_deref(), Some("message/http"));
    assert!(res.text().starts_with("TRACE "), "{}", res.text());
    assert!(res.text().contains("X-Probe: 1") && !res.text().contains("secret"));

    client
        .send(format!(
            "OPTIONS {} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
            bench.url("/headers")
        ))
        .await;
    let res = client.read("OPTIONS").await;
    assert!(res.header("allow").unwrap().contains("TRACE"));
    assert_eq!(bench.hits("/headers"), 0, "neither reached the origin");

    client
        .send(format!(
            "OPTIONS {} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 5\r\n\r\n",
            bench.url("/headers")
        ))
        .await;
    let res = client.read("OPTIONS").await;
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let max = json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "Max-Forwards")
        .unwrap();
    assert_eq!(max[1], "4");
    bench.stop().await;
}

/// The client's `Connection` header is not forwarded: neither its value nor the fields it
/// names reach the origin (the proxy's own connection management is its own business).
#[tokio::test]
async fn connection_itself_is_not_forwarded() {
    let (mock, proxy) = mock_and_proxy(|_| {}).await;
    let request = format!(
        "GET {}/ HTTP/1.1\r\nConnection: keep-alive, X-Private, X-Other\r\nX-Private: 1\r\n\r\n",
        mock.uri()
    );
    let res = send(&proxy, request).await;
    assert_eq!(res.head.status, 200);
    let got = &mock.received_requests().await.unwrap()[0];
    for value in got.headers.get_all("connection") {
        let value = value.to_str().unwrap().to_ascii_lowercase();
        assert!(
            !value.contains("x-private") && !value.contains("x-other"),
            "the client's Connection reached the origin: {value}"
        );
    }
    assert!(got.headers.get("x-private").is_none());
    proxy.shutdown().await.unwrap();
}

/// Loop detection knows this proxy by the name it was given: with `--via-name edge-7`, a
/// request that already passed `edge-7` is a loop (508), and one that passed `proxylab` is not.
#[tokio::test]
async fn via_loop_is_detected_by_the_configured_name() {
    let (mock, proxy) = mock_and_proxy(|c| c.via_name = "edge-7".into()).await;
    let looped = send(
        &proxy,
        format!("GET {}/ HTTP/1.1\r\nVia: 1.1 edge-7\r\n\r\n", mock.uri()),
    )
    .await;
    assert_eq!(looped.head.status, 508);
    let passed = send(
        &proxy,
        format!("GET {}/ HTTP/1.1\r\nVia: 1.1 proxylab\r\n\r\n", mock.uri()),
    )
    .await;
    assert_eq!(passed.head.status, 200);
    assert_eq!(mock.received_requests().await.unwrap().len(), 1);
    proxy.shutdown().await.unwrap();
}
