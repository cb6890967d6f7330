//! `client` subcommands against origin-sim, directly and through the proxy.

// Tests may panic on the unexpected: that is how they fail.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;

/// Starts origin-sim and a proxy on a background runtime that lives as long as the test.
fn servers() -> (tokio::runtime::Runtime, origin_sim::Handle, proxy::Handle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (origin, proxy) = rt.block_on(async {
        let origin = origin_sim::start(origin_sim::Config::all_on_loopback())
            .await
            .unwrap();
        let mut config = proxy::Config::for_tests();
        config.connect_ports = proxy::config::PortPolicy::Any;
        let proxy = proxy::start(config).await.unwrap();
        (origin, proxy)
    });
    (rt, origin, proxy)
}

#[test]
fn get_through_the_proxy_prints_body_and_timing() {
    let (_rt, origin, proxy) = servers();
    let url = format!("{}/bytes/64", origin.url());
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["get", &url, "--proxy", &proxy.addr().to_string(), "-v"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        out.stdout,
        origin_sim::seeded_body(origin_sim::DEFAULT_SEED, 64)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("HTTP/1.1 200"), "{err}");
    assert!(err.contains("via: 1.1 proxylab"), "{err}");
    assert!(
        err.contains("first byte") && err.contains("64 bytes"),
        "{err}"
    );
    assert_eq!(origin.origin().hits("/bytes/64"), 1);
}

#[test]
fn get_direct_and_error_status_exit_code() {
    let (_rt, origin, _proxy) = servers();
    Command::cargo_bin("client")
        .unwrap()
        .args(["get", &format!("{}/status/404", origin.url())])
        .assert()
        .code(22);
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["get", "ftp://x/"])
        .assert()
        .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr)
        .contains("is not an http:// or https:// URL"));
}

#[test]
fn get_https_through_the_tunnel_with_the_generated_ca() {
    let (_rt, origin, proxy) = servers();
    let dir = std::env::temp_dir().join(format!("proxylab-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, origin.ca_pem().unwrap()).unwrap();
    let url = format!(
        "https://localhost:{}/bytes/32",
        origin.tls_addr().unwrap().port()
    );
    let out = Command::cargo_bin("client")
        .unwrap()
        .args([
            "get",
            &url,
            "--proxy",
            &proxy.addr().to_string(),
            "--cacert",
        ])
        .arg(&ca)
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        out.stdout,
        origin_sim::seeded_body(origin_sim::DEFAULT_SEED, 32)
    );
    // Without a CA to trust, https is refused with a hint.
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["get", &url])
        .assert()
        .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("--cacert"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn echo_through_the_proxy() {
    let (_rt, origin, proxy) = servers();
    let echo = origin.echo_addr().unwrap().to_string();
    let out = Command::cargo_bin("client")
        .unwrap()
        .args([
            "echo",
            "--server",
            &echo,
            "--proxy",
            &proxy.addr().to_string(),
            "hello",
            "tunnel",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(out.stdout, b"hello tunnel\n");
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["echo", "--server", &echo])
        .write_stdin("from stdin\nsecond line\n")
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(out.stdout, b"from stdin\nsecond line\n");
}

/// A scripted chat session: the name is announced, /who answers, !DISCONNECT leaves.
#[test]
fn chat_session_from_stdin() {
    let (_rt, origin, proxy) = servers();
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["chat", "--server", &origin.chat_addr().unwrap().to_string()])
        .args(["--proxy", &proxy.addr().to_string(), "--name", "tester"])
        .write_stdin("/who\n!DISCONNECT\n")
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("* welcome to the origin-sim chat (1 online)"),
        "{text}"
    );
    assert!(text.contains("* here: tester"), "{text}");
}

/// `client load --json`: the report's shape (figures redacted), and that every request
/// reached the origin through the proxy.
#[test]
fn load_json_report() {
    let (_rt, origin, proxy) = servers();
    let url = format!("{}/bytes/100", origin.url());
    let out = Command::cargo_bin("client")
        .unwrap()
        .args(["load", &url, "--proxy", &proxy.addr().to_string()])
        .args(["--clients", "4", "--requests", "200", "--json"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .get_output()
        .clone();
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 200);
    assert_eq!(origin.origin().hits("/bytes/100"), 200);
    let latency = &report["latency_us"];
    assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
    assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());
    for key in ["elapsed_s", "requests_per_s"] {
        report[key] = "[figure]".into();
    }
    for key in ["p50", "p90", "p99", "max", "mean"] {
        report["latency_us"][key] = "[figure]".into();
    }
    report["url"] = "[origin]/bytes/100".into();
    report["proxies"] = serde_json::json!(["[proxy]"]);
    insta::assert_snapshot!("load_json", serde_json::to_string_pretty(&report).unwrap());
}

/// `client load` with several proxies takes them in turn, client by client, and `{i}`
/// with `--objects` spreads the requests over that many URLs, one after another.
#[test]
fn load_spreads_clients_over_proxies_and_requests_over_objects() {
    let (rt, origin, first) = servers();
    let second = rt
        .block_on(proxy::start(proxy::Config::for_tests()))
        .unwrap();
    let url = format!("{}/bytes/10?object={{i}}", origin.url());
    Command::cargo_bin("client")
        .unwrap()
        .args(["load", &url, "--objects", "4", "--clients", "4"])
        .args(["--proxy", &first.addr().to_string()])
        .args(["--proxy", &second.addr().to_string(), "--requests", "40"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    for i in 0..4 {
        assert_eq!(origin.origin().hits(&format!("/bytes/10?object={i}")), 10);
    }
    for proxy in [&first, &second] {
        let connections = &proxy.shared().metrics.connections_total;
        assert_eq!(connections.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
