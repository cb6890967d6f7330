//! What the proxy tells its operator: the access log (every format, through real
//! exchanges), `/metrics` and `/stats`.

use crate::support::{eventually, get, Bench, Client};
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
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let bench = Bench::with(|c| {
            c.access_log = Some(log.clone());
            c.log_format = format;
        })
        .await;
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
                assert_eq!(v["bytes_up"], 0);
                assert!(v["bytes_down"].as_u64().unwrap() > 10);
            }
            _ => {
                let apache = regex::Regex::new(&format!(
                    r#"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{{2}}/\d{{4}}:\d\d:\d\d:\d\d \+0000\] "GET {} HTTP/1\.1" 200 \d+{}$"#,
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

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> crate::support::Response {
    let mut client = Client::connect(addr).await;
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
        .await;
    client.read("GET").await
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
    assert_eq!(stats["cache_hits_total"], 2.0);
    assert_eq!(stats["requests_total"]["method=GET,status=2xx"], 3.0);
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
