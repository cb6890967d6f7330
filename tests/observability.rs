//! What the proxy tells its operator: the access log (every format, through real
//! exchanges), `/metrics` and `/stats`.

use crate::support::{admin_get, eventually, get, Bench};
use proxy::config::LogFormat;
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Squid-format lines with the parts that change from run to run replaced.
fn redact(text: &str) -> String {
    let time = regex::Regex::new(r"(?m)^\d+\.\d{3} +\d+ ").unwrap();
    let port = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let text = time.replace_all(text, "TIME ELAPSED ");
    port.replace_all(&text, "127.0.0.1:PORT").into_owned()
}

#[tokio::test]
async fn squid_log_lines_say_miss_hit_denied_tunnel_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rules = dir.path().join("blacklist.txt");
    std::fs::write(&rules, "blocked.test\n").unwrap();
    let bench = crate::tunnels::TunnelBench::with(|c| {
        c.access_log = Some(log.clone());
        c.rules = Some(rules.clone());
        c.connect_ports = proxy::config::PortPolicy::Any;
        c.offline = true;
    })
    .await;
    // Each line is awaited before the next request, so their order is the requests'.
    let mut lines = 0;
    let mut logged = || {
        lines += 1;
        let log = log.clone();
        async move {
            eventually("the access log line", || {
                read(&log).lines().count() >= lines
            })
            .await
        }
    };
    let url = format!("{}/cache/60", bench.origin.url());
    assert_eq!(get(&bench.proxy, &url).await.head.status, 200);
    logged().await;
    assert_eq!(get(&bench.proxy, &url).await.head.status, 200);
    logged().await;
    assert_eq!(
        get(&bench.proxy, "http://blocked.test/").await.head.status,
        403
    );
    logged().await;
    // A hostile target: quotes and a backslash are legal in a request-target.
    let hostile = format!("{}/bytes/3?a=\"b\"&c=\\", bench.origin.url());
    assert_eq!(get(&bench.proxy, &hostile).await.head.status, 200);
    logged().await;
    // An unreachable origin (nothing listens on port 1).
    assert_eq!(
        get(&bench.proxy, "http://127.0.0.1:1/").await.head.status,
        502
    );
    logged().await;
    // A tunnel to the echo server, logged when it closes.
    let echo = bench.origin.echo_addr().unwrap().to_string();
    let back = client::echo(&echo, Some(&bench.proxy_addr()), b"ping")
        .await
        .unwrap();
    assert_eq!(back, b"ping");
    logged().await;
    bench.stop().await;
    insta::assert_snapshot!(redact(&read(&log)));
}

#[tokio::test]
async fn common_combined_and_json_lines_through_the_proxy() {
    for format in [LogFormat::Common, LogFormat::Combined, LogFormat::Json] {
        let (bench, log, _dir) = Bench::with_access_log(format, |_| {}).await;
        let mut client = bench.connect().await;
        client
            .send(format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nReferer: http://r.example/\r\nUser-Agent: test \"agent\"\r\n\r\n",
                bench.url("/bytes/10")
            ))
            .await;
        assert_eq!(client.read("GET").await.head.status, 200);
        drop(client);
        eventually("one access log line", || read(&log).lines().count() == 1).await;
        let line = read(&log);
        let target = bench.url("/bytes/10");
        match format {
            LogFormat::Json => {
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
                assert_eq!(v["url"], target.as_str());
                assert_eq!(v["status"], 200);
                assert_eq!(v["result"], "TCP_MISS");
                assert_eq!(v["user_agent"], "test \"agent\"");
                assert_eq!(v["referer"], "http://r.example/");
                // Bodies and heads apart, both ways: 10 body bytes down, no body up.
                assert_eq!(v["bytes_up"], 0);
                assert_eq!(v["bytes_down"], 10);
                assert!(v["head_bytes_up"].as_u64().unwrap() > 0, "{v}");
                assert!(v["head_bytes_down"].as_u64().unwrap() > 0, "{v}");
            }
            _ => {
                let apache = regex::Regex::new(&format!(
                    r#"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{{2}}/\d{{4}}:\d\d:\d\d:\d\d \+0000\] "GET {} HTTP/1\.1" 200 10{}$"#,
                    regex::escape(&target),
                    if format == LogFormat::Combined {
                        r#" "http://r\.example/" "test \\"agent\\"""#
                    } else {
                        ""
                    }
                ))
                .unwrap();
                assert!(apache.is_match(line.trim_end()), "{format:?}: {line}");
            }
        }
        bench.stop().await;
    }
}

/// Apache's `%b` is the response body's size, `-` when there is none (a HEAD, a 304): log
/// tools add it up as the bytes served.
#[tokio::test]
async fn apache_b_counts_the_body_alone() {
    let (bench, log, _dir) = Bench::with_access_log(LogFormat::Common, |_| {}).await;
    let mut client = bench.connect().await;
    for (method, n) in [("GET", 1), ("HEAD", 2)] {
        client
            .send(format!(
                "{method} {} HTTP/1.1\r\n\r\n",
                bench.url("/bytes/10")
            ))
            .await;
        assert_eq!(client.read(method).await.head.status, 200);
        eventually("the access log line", || read(&log).lines().count() == n).await;
    }
    let text = read(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("\" 200 10"), "{}", lines[0]);
    assert!(lines[1].ends_with("\" 200 -"), "{}", lines[1]);
    drop(client);
    bench.stop().await;
}

/// Checks the Prometheus text exposition format: every sample belongs to a family
/// announced by `# HELP` and `# TYPE` before it, names and labels are well formed, and
/// values are numbers. Returns the samples as (name with labels, value).
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let name_re = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let sample_re = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (\S+)$"#,
    )
    .unwrap();
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_re.is_match(name), "{line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(typed.insert(name.to_string(), kind.to_string()).is_none());
        } else {
            let caps = sample_re
                .captures(line)
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let name = &caps[1];
            assert!(typed.contains_key(name), "sample before its TYPE: {line}");
            let value: f64 = caps[5].parse().unwrap();
            let key = line.rsplit_once(' ').unwrap().0.to_string();
            samples.push((key, value));
        }
    }
    assert!(!samples.is_empty());
    samples
}

#[tokio::test]
async fn metrics_count_what_happened_and_parse_as_exposition_text() {
    let bench = Bench::with(|c| c.admin = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = bench.proxy.admin_addr().unwrap();
    let url = bench.url("/cache/60");
    for _ in 0..3 {
        assert_eq!(get(&bench.proxy, &url).await.head.status, 200);
    }
    let mut client = bench.connect().await;
    client
        .send(format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            bench.url("/echo")
        ))
        .await;
    assert_eq!(client.read("POST").await.head.status, 200);
    drop(client);
    let res = admin_get(admin, "/metrics").await;
    assert_eq!(res.head.status, 200);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let samples = parse_exposition(&res.text());
    let value = |key: &str| {
        samples
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {key} in {samples:?}"))
    };
    assert_eq!(
        value("proxylab_requests_total{method=\"GET\",status=\"2xx\"}"),
        3.0
    );
    assert_eq!(
        value("proxylab_requests_total{method=\"POST\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(value("proxylab_cache_hits_total"), 2.0);
    assert_eq!(value("proxylab_cache_misses_total"), 1.0);
    assert_eq!(value("proxylab_cache_entries"), 1.0);
    assert_eq!(value("proxylab_request_bytes_total"), 5.0);
    assert_eq!(value("proxylab_connections_total"), 4.0);
    let per_thread: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("proxylab_worker_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(per_thread, 4.0);
    // /stats: the same figures as JSON.
    let stats: serde_json::Value =
        serde_json::from_slice(&admin_get(admin, "/stats").await.body).unwrap();
    // Counters are integers in JSON, as in the exposition text.
    assert_eq!(stats["cache_hits_total"].to_string(), "2");
    assert_eq!(
        stats["requests_total"]["method=GET,status=2xx"].to_string(),
        "3"
    );
    assert_eq!(admin_get(admin, "/other").await.head.status, 404);
    bench.stop().await;
}

#[tokio::test]
async fn metrics_are_only_for_allowed_clients() {
    let bench = Bench::with(|c| {
        c.admin = Some("127.0.0.1:0".parse().unwrap());
        c.allow_clients = vec!["192.0.2.0/24".parse().unwrap()];
    })
    .await;
    let res = admin_get(bench.proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(res.head.status, 403);
    assert!(!res.text().contains("proxylab_"));
    bench.stop().await;
}

/// One direction of a captured TCP connection: its frames checked, its payload joined.
#[derive(Debug, Default)]
struct Direction {
    /// The next sequence number expected (set by the SYN).
    next: Option<u32>,
    payload: Vec<u8>,
    syn: bool,
    fin: bool,
}

/// Reads a capture back with pcap-file and checks every frame with etherparse: the
/// checksummed IPv4/TCP headers parse, each direction starts with a SYN, and sequence
/// numbers run on without gaps or overlaps through the data up to the FIN. Returns each
/// direction's payload, by (source port, destination port).
fn read_capture(path: &Path) -> std::collections::HashMap<(u16, u16), Direction> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let file = std::fs::File::open(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut flows: std::collections::HashMap<(u16, u16), Direction> = Default::default();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let sliced = SlicedPacket::from_ethernet(&packet.data).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not IPv4: {sliced:?}");
        };
        assert_eq!(ip.header().source_addr().to_string(), "127.0.0.1");
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            panic!("not TCP: {sliced:?}");
        };
        let dir = flows
            .entry((tcp.source_port(), tcp.destination_port()))
            .or_default();
        let seq = tcp.sequence_number();
        if tcp.syn() {
            assert!(!dir.syn, "a second SYN");
            dir.syn = true;
            dir.next = Some(seq.wrapping_add(1));
            continue;
        }
        let expected = dir.next.expect("data before the SYN");
        assert!(!dir.fin, "a segment after the FIN");
        assert_eq!(seq, expected, "sequence numbers must be continuous");
        assert!(tcp.ack(), "every segment after the SYN acknowledges");
        let payload = tcp.payload();
        dir.payload.extend_from_slice(payload);
        dir.next = Some(expected.wrapping_add(payload.len() as u32 + u32::from(tcp.fin())));
        dir.fin = tcp.fin();
    }
    flows
}

/// The capture holds both legs, and each leg's payload is exactly what went over it: what
/// the client sent and got, and what our own origin received and answered.
#[tokio::test]
async fn a_capture_holds_both_legs_byte_exact() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWER: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    // An origin of our own, so that we know the bytes on the upstream leg exactly.
    let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut conn, _) = origin.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The forwarded request: a head and a 5-byte body.
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"hello")) {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the proxy closed early: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        conn.write_all(ANSWER).await.unwrap();
        conn.shutdown().await.unwrap();
        got
    });
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("proxy.pcap");
    let proxy = proxy::start(proxy::Config {
        pcap: Some(pcap.clone()),
        ..proxy::Config::for_tests()
    })
    .await
    .unwrap();
    let request = format!(
        "POST http://{origin_addr}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.ends_with(b"hello world"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let origin_got = received.await.unwrap();
    drop(client);
    let proxy_port = proxy.addr().port();
    // Shutting down writes out the capture.
    proxy.shutdown().await.unwrap();

    let flows = read_capture(&pcap);
    let leg = |from: u16, to: u16| {
        flows
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no frames {from} -> {to}: {:?}", flows.keys()))
    };
    // Client leg: exactly what the client sent, and exactly what it received.
    assert_eq!(leg(client_port, proxy_port).payload, request.as_bytes());
    assert_eq!(leg(proxy_port, client_port).payload, answer);
    // Upstream leg: the proxy's ephemeral port is the one that talks to the origin.
    let (&(upstream_port, _), _) = flows
        .iter()
        .find(|((_, to), _)| *to == origin_addr.port())
        .expect("an upstream leg");
    assert_eq!(leg(upstream_port, origin_addr.port()).payload, origin_got);
    assert_eq!(leg(origin_addr.port(), upstream_port).payload, ANSWER);
    // Every direction was opened, and the client leg was closed both ways.
    assert!(flows.values().all(|d| d.syn));
    assert!(leg(client_port, proxy_port).fin && leg(proxy_port, client_port).fin);
    assert_eq!(flows.len(), 4, "{:?}", flows.keys());
}

/// With a capture on, a CONNECT tunnel's bytes go through the proxy's copy loop, not
/// `splice`, so the capture holds them: the echo's payload is in both legs, both ways.
#[tokio::test]
async fn a_captured_tunnel_records_its_bytes() {
    let origin = origin_sim::start(origin_sim::Config::all_on_loopback())
        .await
        .unwrap();
    let echo = origin.echo_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tunnel.pcap");
    let proxy = proxy::start(proxy::Config {
        pcap: Some(pcap.clone()),
        connect_ports: proxy::config::PortPolicy::Any,
        ..proxy::Config::for_tests()
    })
    .await
    .unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let back = client::echo(&echo.to_string(), Some(&proxy.addr().to_string()), &payload)
        .await
        .unwrap();
    assert!(back == payload, "the echo came back whole");
    let proxy_port = proxy.addr().port();
    proxy.shutdown().await.unwrap();
    origin.shutdown().await;
    let flows = read_capture(&pcap);
    let carried = |from: u16, to: u16| {
        flows
            .get(&(from, to))
            .is_some_and(|d| d.payload.windows(payload.len()).any(|w| w == payload))
    };
    let to_echo = flows
        .keys()
        .find(|(_, to)| *to == echo.port())
        .map(|(from, _)| *from)
        .expect("an upstream leg");
    assert!(carried(to_echo, echo.port()), "upstream leg, up");
    assert!(carried(echo.port(), to_echo), "upstream leg, down");
    let client_legs = flows
        .iter()
        .filter(|((from, to), _)| *to == proxy_port || *from == proxy_port)
        .filter(|(_, d)| d.payload.windows(payload.len()).any(|w| w == payload))
        .count();
    assert_eq!(client_legs, 2, "the client leg carried it both ways");
}
