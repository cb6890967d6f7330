//! Hostile input (issue 13): each bad message gets a clear answer, nothing of it is
//! smuggled past the proxy, and the refusal is visible to the operator. Where the origin's
//! view matters, a [`Recorder`] keeps every byte it received.

use crate::support::{eventually, Bench, Client, Recorder};
use proxy::config::LogFormat;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding, so a 1.0 request with one has framing
/// that cannot be trusted: 400 and close, and nothing (not the smuggled request behind it)
/// reaches the origin.
#[tokio::test]
async fn transfer_encoding_in_http_1_0_is_refused_and_the_connection_closed() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "POST {} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET {} HTTP/1.0\r\n\r\n",
            bench.url("/echo"),
            bench.url("/smuggled")
        ))
        .await;
    let res = client.read("POST").await;
    assert_eq!(res.head.status, 400, "{}", res.text());
    assert!(res.text().contains("HTTP/1.0"), "{}", res.text());
    assert!(client.closed().await, "a second request was read");
    assert_eq!(bench.origin.origin().requests(), 0);
    drop(client);
    bench.stop().await;
}

/// A chunked request body with a bad chunk size: the client is told (400), and nothing from
/// the bad chunk on reaches the origin — not the smuggled request after it either.
#[tokio::test]
async fn a_bad_chunk_size_is_400_and_nothing_after_it_is_forwarded() {
    for bad in ["17xf", "-1", "0x5", "fffffffffffffffff"] {
        let origin = Recorder::start(&[]).await;
        let bench = Bench::start().await;
        let mut client = bench.connect().await;
        client
            .send(format!(
                "POST {} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n{bad}\r\nGET /smuggled HTTP/1.1\r\n\r\n",
                origin.url("/upload")
            ))
            .await;
        let res = client.read("POST").await;
        assert_eq!(res.head.status, 400, "{bad}: {}", res.text());
        assert!(res.text().contains("chunk"), "{bad}: {}", res.text());
        assert!(client.closed().await, "{bad}");
        // The proxy closed the upstream connection: everything it sent has arrived (here,
        // nothing: the bad size was decoded before the head and first chunk went out).
        eventually("the upstream connection closed", || origin.closed() == 1).await;
        let received = origin.received().concat();
        assert!(!received.contains(bad), "{bad}: {received:?}");
        assert!(!received.contains("smuggled"), "{bad}: {received:?}");
        drop(client);
        bench.stop().await;
    }
}

/// A few empty lines before a request are ignored (RFC 9112 §2.2); a flood of them, or of
/// NULs, is refused with 400 at once — not read until a limit or a deadline.
#[tokio::test]
async fn empty_lines_before_a_request_a_few_ignored_a_flood_refused() {
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "\r\n\r\n\n\r\nGET {} HTTP/1.1\r\n\r\n",
            bench.url("/bytes/3")
        ))
        .await;
    assert_eq!(client.read("GET").await.body.len(), 3);
    for flood in [b"\r\n".repeat(500_000), vec![0u8; 1 << 20]] {
        let mut stream = tokio::net::TcpStream::connect(bench.proxy.addr())
            .await
            .unwrap();
        let (mut rd, mut wr) = stream.split();
        // Written while the answer is read: the proxy answers long before the flood ends.
        let write = async {
            let _ = wr.write_all(&flood).await;
        };
        let read = async {
            let mut answer = Vec::new();
            let _ = rd.read_to_end(&mut answer).await;
            answer
        };
        let ((), answer) = tokio::join!(write, read);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{:?}",
            &answer[..answer.len().min(200)]
        );
    }
    assert_eq!(bench.origin.origin().requests(), 1);
    bench.stop().await;
}

/// `Connection` naming `Content-Length` or `Host` does not remove them: a body forwarded
/// without its length would be read by the next hop as the next request.
#[tokio::test]
async fn connection_never_removes_the_length_or_the_host() {
    let origin = Recorder::start(&[
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length, X-Drop\r\n\
         X-Drop: 1\r\n\r\nok",
    ])
    .await;
    let bench = Bench::start().await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "POST {} HTTP/1.1\r\nHost: ignored\r\nContent-Length: 5\r\n\
             Connection: content-length, host, x-gone\r\nX-Gone: 1\r\n\r\nhello",
            origin.url("/upload")
        ))
        .await;
    let res = client.read("POST").await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.header("content-length").as_deref(), Some("2"));
    assert_eq!(res.header("x-drop"), None, "other names it lists still go");
    assert_eq!(res.body, b"ok");
    eventually("the body at the origin", || {
        origin.received().concat().ends_with("hello")
    })
    .await;
    let received = origin.received().concat();
    let head = received
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-length: 5"), "{received:?}");
    assert!(
        head.contains(&format!("\r\nhost: {}", origin.addr)),
        "{received:?}"
    );
    assert!(!head.contains("x-gone"), "{received:?}");
    bench.stop().await;
}

/// A request refused while its head was read is an access-log line (Squid's
/// `NONE/400 … error:invalid-request`) and a count in `/metrics`, like any other.
#[tokio::test]
async fn refusals_while_reading_the_head_are_logged_and_counted() {
    let (bench, log, _dir) = Bench::with_access_log(LogFormat::Squid, |c| {
        c.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let refusals: [(&str, String); 3] = [
        ("400", "\u{0}\u{0}\u{0}GET / HTTP/1.1\r\n\r\n".into()),
        (
            "400",
            "GET http://127.0.0.1/ HTTP/1.1\r\nBad Header Line\r\n\r\n".into(),
        ),
        ("414", format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000))),
    ];
    for (i, (status, request)) in refusals.iter().enumerate() {
        let mut client = bench.connect().await;
        client.send(request).await;
        assert_eq!(client.read("GET").await.head.status.to_string(), *status);
        eventually("the access log line", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .count()
                > i
        })
        .await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(" NONE/400 ")
            && lines[0].ends_with(" NONE error:invalid-request - HIER_NONE/- -"),
        "{}",
        lines[0]
    );
    assert!(
        lines[2].contains(" NONE/414 ") && lines[2].contains(" error:uri-too-long "),
        "{}",
        lines[2]
    );
    let mut admin = Client::connect(bench.proxy.admin_addr().unwrap()).await;
    admin.send("GET /metrics HTTP/1.1\r\n\r\n").await;
    let metrics = admin.read("GET").await.text();
    assert!(
        metrics.contains("\nproxylab_refused_heads_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("proxylab_requests_total{method=\"other\",status=\"4xx\"} 3\n"),
        "{metrics}"
    );
    bench.stop().await;
}

/// A `url` rule and a `regex` rule for `/secret` cannot be walked around with another
/// spelling of the same path: the target is normalised (RFC 3986 §6.2.2) before the rules
/// see it, and the origin gets the normal form too. Host spellings (case, a trailing dot)
/// name the same host; IPv4 addresses in other notations are refused.
#[tokio::test]
async fn filtering_cannot_be_walked_around_by_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    // The rules name the origin's port, known once it runs: written, then reloaded.
    std::fs::write(&rules, "default = \"allow\"\n").unwrap();
    let bench = Bench::with(|c| c.rules = Some(rules.clone())).await;
    let port = bench.origin.addr().port();
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\naction = \"block\"\nurl = \"http://127.0.0.1:{port}/secret\"\n\n\
             [[rule]]\naction = \"block\"\nregex = '^http://127\\.0\\.0\\.1:\\d+/private/'\n\n\
             [[rule]]\naction = \"block\"\nhost = \"blocked.test\"\n"
        ),
    )
    .unwrap();
    bench.proxy.shared().rules.reload().unwrap();
    for path in [
        "/secret",
        "/%73ecret",
        "/%73%65%63%72%65%74",
        "/x/../secret",
        "/./secret",
        "/a/b/../../secret",
        "/%2e%2e/secret",
        "/private/x",
        "/%70rivate/x",
        "/public/../private/x",
    ] {
        let res = crate::support::get(&bench.proxy, &bench.url(path)).await;
        assert_eq!(res.head.status, 403, "{path}: {}", res.text());
    }
    for host in ["BLOCKED.test", "blocked.test.", "Blocked.Test."] {
        let res = crate::support::get(&bench.proxy, &format!("http://{host}/")).await;
        assert_eq!(res.head.status, 403, "{host}: {}", res.text());
    }
    for host in ["2130706433", "0x7f.1", "0177.0.0.1", "127.1"] {
        let res = crate::support::get(&bench.proxy, &format!("http://{host}:{port}/secret")).await;
        assert_eq!(res.head.status, 400, "{host}: {}", res.text());
    }
    assert_eq!(
        bench.origin.origin().requests(),
        0,
        "the origin saw one of them"
    );
    // What is let through reaches the origin in the normal form the rules saw.
    let ok = crate::support::get(&bench.proxy, &bench.url("/x/../%62ytes/3")).await;
    assert_eq!(ok.body.len(), 3);
    let seen: Vec<String> = bench
        .origin
        .origin()
        .seen()
        .into_iter()
        .map(|s| s.target)
        .collect();
    assert_eq!(seen, ["/bytes/3"]);
    bench.stop().await;
}

/// Polls until the origin's bytes equal `expected` (they arrive a little after the client's
/// answer), then compares them, so a difference shows in full.
async fn origin_got(origin: &Recorder, expected: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while origin.received().concat() != expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(origin.received().concat(), expected);
}

/// The request-smuggling classes of RFC 9112 §11.2, each sent raw: what the client is
/// answered, and the exact bytes the origin received — nothing at all when the proxy
/// refuses, or one request with one unambiguous framing when it forwards.
#[tokio::test]
async fn smuggling_classes_are_refused_or_forwarded_unambiguously() {
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    // Refused: 400, and the origin never even sees a connection.
    let refused: &[(&str, &str)] = &[
        ("CL.TE", "POST {url} HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
        ("TE.CL", "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("TE.TE, a second coding", "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n"),
        ("TE.TE, xchunked", "POST {url} HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE.TE, chunked then identity", "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("TE.TE, space before the colon", "POST {url} HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("TE.TE, a folded line", "POST {url} HTTP/1.1\r\nX: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("duplicate Content-Length", "POST {url} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("a list of unequal lengths", "POST {url} HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ("an oversized Content-Length", "POST {url} HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        ("a signed Content-Length", "POST {url} HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),
        ("obs-fold", "GET {url} HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n"),
        ("a bare CR ending a line", "GET {url} HTTP/1.1\rX: 1\r\n\r\n"),
        ("a bare CR in a value", "GET {url} HTTP/1.1\r\nX: a\rb\r\n\r\n"),
        ("HTTP/0.9", "GET {url}\r\n\r\n"),
        ("an unknown version", "GET {url} HTTP/1.2\r\n\r\n"),
        ("Transfer-Encoding in HTTP/1.0", "POST {url} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    /// Sends `request` (its `{url}` pointing at a fresh recorder) through a fresh proxy.
    async fn exchange(request: &str) -> (Recorder, Bench, Client, crate::support::Response) {
        let origin = Recorder::start(&[OK]).await;
        let bench = Bench::start().await;
        let mut client = bench.connect().await;
        client
            .send(request.replace("{url}", &origin.url("/x")))
            .await;
        let res = client.read("POST").await;
        (origin, bench, client, res)
    }
    for (class, request) in refused {
        let (origin, bench, mut client, res) = exchange(request).await;
        assert_eq!(res.head.status, 400, "{class}: {}", res.text());
        assert!(client.closed().await, "{class}: the connection stayed open");
        drop(client);
        bench.stop().await;
        assert_eq!(origin.received(), Vec::<String>::new(), "{class}");
    }
    // Forwarded, re-framed so that the origin can read it only one way.
    let via = "Via: 1.1 proxylab\r\nX-Forwarded-For: 127.0.0.1\r\n";
    let forwarded: &[(&str, &str, String)] = &[
        (
            "a list of equal lengths",
            "POST {url} HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            format!("POST /x HTTP/1.1\r\nHost: {{host}}\r\n{via}Content-Length: 5\r\n\r\nhello"),
        ),
        (
            "chunk extensions and trailers",
            "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=\"a b\";x\r\nhello\r\n0\r\nContent-Length: 99\r\nX-Smuggled: 1\r\n\r\n",
            format!(
                "POST /x HTTP/1.1\r\nHost: {{host}}\r\n{via}Transfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
        (
            "absolute-form with another Host",
            "GET {url} HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            format!("GET /x HTTP/1.1\r\nHost: {{host}}\r\n{via}\r\n"),
        ),
        (
            "bare LF line endings",
            "GET {url} HTTP/1.1\nX-A: 1\n\n",
            format!("GET /x HTTP/1.1\r\nHost: {{host}}\r\nX-A: 1\r\n{via}\r\n"),
        ),
    ];
    for (class, request, expected) in forwarded {
        let (origin, bench, client, res) = exchange(request).await;
        assert_eq!(res.head.status, 200, "{class}: {}", res.text());
        origin_got(
            &origin,
            &expected.replace("{host}", &origin.addr.to_string()),
        )
        .await;
        drop(client);
        bench.stop().await;
    }
}

/// A refusal while reading the head is a line in the other formats too.
#[tokio::test]
async fn refusals_are_lines_in_every_log_format() {
    for (format, expected) in [
        (
            LogFormat::Common,
            "\"NONE error:invalid-request HTTP/1.1\" 400 ",
        ),
        (
            LogFormat::Combined,
            "\"NONE error:invalid-request HTTP/1.1\" 400 ",
        ),
        (LogFormat::Json, "\"url\":\"error:invalid-request\""),
    ] {
        let (bench, log, _dir) = Bench::with_access_log(format, |_| {}).await;
        let mut client = bench.connect().await;
        client.send("\u{0}garbage\r\n\r\n").await;
        assert_eq!(client.read("GET").await.head.status, 400);
        eventually("the access log line", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .count()
                == 1
        })
        .await;
        let line = std::fs::read_to_string(&log).unwrap();
        assert!(line.contains(expected), "{format:?}: {line}");
        drop(client);
        bench.stop().await;
    }
}
