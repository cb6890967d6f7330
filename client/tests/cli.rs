//! `client get` against origin-sim, directly and through the proxy.

// Tests may panic on the unexpected: that is how they fail.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;

/// Starts origin-sim and a proxy on a background runtime that lives as long as the test.
fn servers() -> (tokio::runtime::Runtime, origin_sim::Handle, proxy::Handle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (origin, proxy) = rt.block_on(async {
        let origin = origin_sim::start(origin_sim::Config::default())
            .await
            .unwrap();
        let proxy = proxy::start(proxy::Config::for_tests()).await.unwrap();
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
