//! Every error the proxy answers itself (status, one-sentence body, connection closed),
//! and what a client sees when the origin misbehaves. Error pages are insta snapshots.

use crate::support::{Bench, Client, Response};
use std::time::Duration;

/// Headers whose values change from run to run (ports) are redacted in snapshots.
fn snapshot_text(res: &Response) -> String {
    res.redacted(&[]).replace('\r', "")
}

async fn raw(bench: &Bench, request: impl AsRef<[u8]>) -> (Response, Client) {
    let mut client = bench.connect().await;
    client.send(request).await;
    let res = client.read("GET").await;
    (res, client)
}

#[tokio::test]
async fn malformed_request_is_400() {
    let bench = Bench::start().await;
    let (res, mut client) = raw(
        &bench,
        "GET http://127.0.0.1/ HTTP/1.1\r\nBad Header Line\r\n\r\n",
    )
    .await;
    assert_eq!(res.head.status, 400);
    insta::assert_snapshot!("error_400_malformed", snapshot_text(&res));
    assert!(client.closed().await);
    bench.stop().await;
}

#[tokio::test]
async fn bad_targets_and_framing_are_400() {
    let bench = Bench::start().await;
    for request in [
        "GET ftp://127.0.0.1/ HTTP/1.1\r\n\r\n",
        "GET http://user:pw@127.0.0.1/ HTTP/1.1\r\n\r\n",
        "GET http://127.0.0.1:99999/ HTTP/1.1\r\n\r\n",
        "POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: five\r\n\r\n",
    ] {
        let (res, _) = raw(&bench, request).await;
        assert_eq!(res.head.status, 400, "{request:?} -> {}", res.text());
        assert!(res.text().starts_with("400 Bad Request: "), "{}", res.text());
    }
    assert_eq!(bench.origin.origin().requests(), 0);
    bench.stop().await;
}

#[tokio::test]
async fn uri_over_8_kib_is_414() {
    let bench = Bench::start().await;
    let long = format!(
        "GET {}/{} HTTP/1.1\r\n\r\n",
        bench.url(""),
        "a".repeat(9000)
    );
    let (res, _) = raw(&bench, long).await;
    assert_eq!(res.head.status, 414);
    insta::assert_snapshot!("error_414", snapshot_text(&res));
    // Just under the limit still goes through.
    let ok = format!(
        "GET {}/{} HTTP/1.1\r\n\r\n",
        bench.url(""),
        "a".repeat(8000)
    );
    let (res, _) = raw(&bench, ok).await;
    assert_eq!(
        res.head.status, 404,
        "reached the origin, which has no such route"
    );
    bench.stop().await;
}

#[tokio::test]
async fn header_section_over_64_kib_is_431() {
    let bench = Bench::start().await;
    let mut request = format!("GET {} HTTP/1.1\r\n", bench.url("/bytes/1"));
    for i in 0..70 {
        request.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(1000)));
    }
    request.push_str("\r\n");
    let (res, _) = raw(&bench, request).await;
    assert_eq!(res.head.status, 431);
    insta::assert_snapshot!("error_431", snapshot_text(&res));
    assert_eq!(bench.hits("/bytes/1"), 0);
    bench.stop().await;
}

/// A client that sends part of a head and stops gets 408 after --header-timeout.
#[tokio::test]
async fn slow_header_section_is_408() {
    let bench = Bench::with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let (res, _) = raw(&bench, "GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n").await;
    assert_eq!(res.head.status, 408);
    insta::assert_snapshot!("error_408", snapshot_text(&res));
    bench.stop().await;
}

#[tokio::test]
async fn connection_refused_is_502() {
    let bench = Bench::start().await;
    // A port that was just free: bind it, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (res, _) = raw(
        &bench,
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert_eq!(res.head.status, 502);
    assert!(
        res.text()
            .contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{}",
        res.text()
    );
    bench.stop().await;
}

/// With --offline no DNS query is made: an unknown name is 502, a --resolve name works.
#[tokio::test]
async fn unresolvable_name_is_502_and_resolve_overrides() {
    let bench = Bench::with(|c| {
        c.offline = true;
        c.resolve = vec![("origin.test".into(), "127.0.0.1".parse().unwrap())];
    })
    .await;
    let (res, _) = raw(&bench, "GET http://nowhere.test/ HTTP/1.1\r\n\r\n").await;
    assert_eq!(res.head.status, 502);
    insta::assert_snapshot!("error_502_unresolvable", snapshot_text(&res));
    let port = bench.origin.addr().port();
    let (res, _) = raw(
        &bench,
        format!("GET http://origin.test:{port}/bytes/4 HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.body.len(), 4);
    let (res, _) = raw(
        &bench,
        format!("GET http://localhost:{port}/bytes/4 HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert_eq!(res.head.status, 200);
    bench.stop().await;
}

/// An origin slower than --upstream-timeout (or one that never answers) is 504.
#[tokio::test]
async fn slow_or_hanging_origin_is_504() {
    let bench = Bench::with(|c| c.upstream_timeout = Duration::from_millis(300)).await;
    let (res, _) = raw(
        &bench,
        format!("GET {} HTTP/1.1\r\n\r\n", bench.url("/hang")),
    )
    .await;
    assert_eq!(res.head.status, 504);
    // The origin's port (and so the body's length) differs per run.
    let text = res
        .redacted(&["content-length"])
        .replace(&bench.origin.addr().to_string(), "ORIGIN");
    insta::assert_snapshot!("error_504", text);
    let (res, _) = raw(
        &bench,
        format!("GET {} HTTP/1.1\r\n\r\n", bench.url("/delay/5000")),
    )
    .await;
    assert_eq!(res.head.status, 504);
    bench.stop().await;
}

#[tokio::test]
async fn malformed_origin_response_is_502() {
    let bench = Bench::start().await;
    let (res, _) = raw(
        &bench,
        format!("GET {} HTTP/1.1\r\n\r\n", bench.url("/malformed")),
    )
    .await;
    assert_eq!(res.head.status, 502);
    assert!(res.text().contains("invalid response"), "{}", res.text());
    bench.stop().await;
}

/// Faults after the response head has gone out cannot become an error page: the proxy
/// cuts the client connection, so the client sees an incomplete body, never a short one
/// passed off as whole. Other clients are unaffected.
#[tokio::test]
async fn truncated_or_reset_origin_body_cuts_the_client_off() {
    let bench = Bench::start().await;
    for path in ["/truncate/100000", "/reset"] {
        let mut client = bench.connect().await;
        client
            .send(format!("GET {} HTTP/1.1\r\n\r\n", bench.url(path)))
            .await;
        let outcome = tokio::time::timeout(crate::support::DEADLINE, client.try_read("GET"))
            .await
            .unwrap();
        assert!(
            outcome.is_err(),
            "{path}: the client must see the body cut off, got {outcome:?}"
        );
    }
    let ok = crate::support::get(&bench.proxy, &bench.url("/bytes/10")).await;
    assert_eq!(ok.head.status, 200);
    bench.stop().await;
}

/// An https:// target in absolute-form would need TLS from the proxy: 501, with a hint.
#[tokio::test]
async fn https_absolute_form_is_501() {
    let bench = Bench::start().await;
    let (res, _) = raw(&bench, "GET https://127.0.0.1/ HTTP/1.1\r\n\r\n").await;
    assert_eq!(res.head.status, 501);
    insta::assert_snapshot!("error_501_https", snapshot_text(&res));
    bench.stop().await;
}

/// A bad request on one connection does not disturb a request in flight on another.
#[tokio::test]
async fn bad_client_does_not_disturb_others() {
    let bench = Bench::start().await;
    let mut slow = bench.connect().await;
    slow.send(format!(
        "GET {} HTTP/1.1\r\n\r\n",
        bench.url("/drip/5?ms=20")
    ))
    .await;
    let (bad, _) = raw(&bench, "\x16\x03\x01 garbage\r\n\r\n").await;
    assert_eq!(bad.head.status, 400);
    let res = slow.read("GET").await;
    assert_eq!(res.body.len(), 5);
    bench.stop().await;
}

/// A server that never completes the TCP handshake makes the proxy give up after
/// --connect-timeout with 504. The "server" is a listener whose accept queue is full
/// (backlog 0, filled by connections nobody accepts), so the kernel drops further SYNs.
#[tokio::test]
async fn connect_timeout_is_504() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let addr = full.local_addr().unwrap();
    // Fill the accept queue: these connects complete (or hang) and are never accepted.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        );
        if let Ok(Ok(stream)) = attempt.await {
            fillers.push(stream);
        }
    }
    let bench = Bench::with(|c| c.connect_timeout = Duration::from_millis(300)).await;
    let (res, _) = raw(&bench, format!("GET http://{addr}/ HTTP/1.1\r\n\r\n")).await;
    assert_eq!(res.head.status, 504, "{}", res.text());
    assert!(res.text().contains("connecting to"), "{}", res.text());
    drop(full);
    bench.stop().await;
}
