//! Filtering rules (block, allow, rewrite, live reload), client access control and proxy
//! authentication, each proven by what the client got and what the origin saw.

use crate::support::{eventually_async, get, replace_file, Bench, Client};
use std::path::PathBuf;

/// A rules file in its own temporary directory (kept alive by the returned guard).
fn rules_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const BLOCK_SITE: &str = r#"
[[rule]]
action = "block"
host = "*.blocked.test"
"#;

#[tokio::test]
async fn a_blocked_host_gets_403_naming_the_rule_before_any_dns() {
    let (_dir, path) = rules_file("rules.toml", BLOCK_SITE);
    let bench = Bench::with(|c| {
        c.rules = Some(path.clone());
        // With --offline a name that reached the resolver would answer 502, not 403.
        c.offline = true;
    })
    .await;
    let res = get(&bench.proxy, "http://www.blocked.test/secret").await;
    assert_eq!(res.head.status, 403);
    assert_eq!(
        res.text(),
        "403 Forbidden: blocked by rules.toml rule 1 (line 2: host = \"*.blocked.test\").\n"
    );
    // CONNECT is filtered by the same host rule.
    let mut client = bench.connect().await;
    client
        .send("CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n")
        .await;
    let res = client.read("CONNECT").await;
    assert_eq!(res.head.status, 403);
    assert!(res.text().contains("rule 1"), "{}", res.text());
    // Anything else goes through as before.
    let ok = get(&bench.proxy, &bench.url("/bytes/10")).await;
    assert_eq!(ok.head.status, 200);
    assert_eq!(bench.origin.origin().requests(), 1);
    bench.stop().await;
}

#[tokio::test]
async fn allow_list_mode_lets_through_only_what_a_rule_allows() {
    let text = r#"
default = "deny"

[[rule]]
action = "allow"
url = "http://127.0.0.1/"
"#;
    let (_dir, path) = rules_file("rules.toml", text);
    let bench = Bench::with(|c| c.rules = Some(path.clone())).await;
    // The origin's port is not 80, so the URL prefix does not match: denied by default.
    let res = get(&bench.proxy, &bench.url("/bytes/10")).await;
    assert_eq!(res.head.status, 403);
    assert!(res.text().contains("the default (line 2"), "{}", res.text());
    let port = bench.origin.addr().port();
    replace_file(
        &path,
        &format!(
            "default = \"deny\"\n\n[[rule]]\naction = \"allow\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        ),
    );
    let url = bench.url("/bytes/10");
    eventually_async("the allow rule to apply", || async {
        get(&bench.proxy, &url).await.head.status == 200
    })
    .await;
    bench.stop().await;
}

#[tokio::test]
async fn header_rewrites_reach_the_origin_and_the_client() {
    let text = r#"
[[header]]
on = "request"
remove = ["Cookie"]
set = { "User-Agent" = "proxylab-test" }

[[header]]
on = "response"
hosts = ["127.0.0.1"]
add = { "X-Filtered" = "yes" }
"#;
    let (_dir, path) = rules_file("rules.toml", text);
    let bench = Bench::with(|c| c.rules = Some(path.clone())).await;
    let mut client = bench.connect().await;
    client
        .send(format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nCookie: secret=1\r\nUser-Agent: curl\r\n\r\n",
            bench.url("/headers")
        ))
        .await;
    let res = client.read("GET").await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.header("x-filtered").as_deref(), Some("yes"));
    let seen: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let names: Vec<(String, String)> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    assert!(
        !names.iter().any(|(n, _)| n.eq_ignore_ascii_case("cookie")),
        "{names:?}"
    );
    assert!(
        names.contains(&("User-Agent".into(), "proxylab-test".into())),
        "{names:?}"
    );
    bench.stop().await;
}

#[tokio::test]
async fn a_rule_added_while_running_applies_and_a_broken_file_keeps_the_old_rules() {
    let (_dir, path) = rules_file("blacklist.txt", "# nothing blocked yet\n");
    let bench = Bench::with(|c| c.rules = Some(path.clone())).await;
    let url = bench.url("/bytes/10");
    assert_eq!(get(&bench.proxy, &url).await.head.status, 200);
    // What `proxy block` does: an atomic rewrite of the file.
    proxy::policy::rules::block(&path, "127.0.0.1").unwrap();
    eventually_async("the new rule to apply", || async {
        get(&bench.proxy, &url).await.head.status == 403
    })
    .await;
    // A file that does not parse: the block stays in force.
    replace_file(&path, "http:/not a pattern\n");
    let rules = bench.proxy.shared().rules.clone();
    // However many times the watcher has tried it by now, a reload of this file (as
    // SIGHUP asks for) fails and leaves the old rules in force.
    let err = rules.reload().unwrap_err();
    assert_eq!((err.line, err.column), (1, 1), "{err}");
    assert_eq!(get(&bench.proxy, &url).await.head.status, 403);
    assert_eq!(rules.current().rules.len(), 1);
    // Fixed again: the block is lifted.
    replace_file(&path, "# nothing blocked\n");
    eventually_async("the emptied list to apply", || async {
        get(&bench.proxy, &url).await.head.status == 200
    })
    .await;
    bench.stop().await;
}

#[tokio::test]
async fn reload_with_50_requests_in_flight_drops_none() {
    let (_dir, path) = rules_file("rules.toml", "");
    let bench = Bench::with(|c| c.rules = Some(path.clone())).await;
    let origin = bench.origin.origin().clone();
    let mut held = Vec::new();
    for i in 0..50 {
        let url = bench.url(&format!("/gate/reload?cc=no-store&n={i}"));
        let addr = bench.proxy.addr();
        held.push(tokio::spawn(async move {
            Client::connect(addr).await.get(&url).await
        }));
    }
    // All 50 are at the origin, held there, before the rules change.
    crate::support::eventually("50 held requests", || origin.requests() >= 50).await;
    replace_file(&path, BLOCK_SITE);
    eventually_async("the new rules to apply", || async {
        get(&bench.proxy, "http://a.blocked.test/")
            .await
            .head
            .status
            == 403
    })
    .await;
    origin.open_gate("reload");
    for h in held {
        let res = h.await.unwrap();
        assert_eq!(res.head.status, 200, "{}", res.text());
        assert_eq!(res.text(), "gate reload opened\n");
    }
    bench.stop().await;
}

#[tokio::test]
async fn clients_outside_allow_clients_get_403() {
    let bench = Bench::with(|c| c.allow_clients = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let res = get(&bench.proxy, &bench.url("/bytes/10")).await;
    assert_eq!(res.head.status, 403);
    assert!(
        res.text()
            .contains("127.0.0.1 is not allowed to use this proxy"),
        "{}",
        res.text()
    );
    assert_eq!(bench.origin.origin().requests(), 0);
    bench.stop().await;
}

fn basic(user_pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[tokio::test]
async fn proxy_authentication_answers_407_until_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let line = proxy::policy::auth::hash_line("ann", "s3cret").unwrap();
    std::fs::write(&users, format!("# proxy users\n{line}\n")).unwrap();
    let bench = Bench::with(|c| c.auth_file = Some(users.clone())).await;
    let url = bench.url("/headers");
    let ask = |auth: Option<String>| {
        let url = url.clone();
        let addr = bench.proxy.addr();
        async move {
            let mut client = Client::connect(addr).await;
            let auth = auth
                .map(|a| format!("Proxy-Authorization: {a}\r\n"))
                .unwrap_or_default();
            client
                .send(format!("GET {url} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"))
                .await;
            client.read("GET").await
        }
    };
    for wrong in [
        None,
        Some(basic("ann:guess")),
        Some(basic("bob:s3cret")),
        Some("Basic %%%".to_string()),
        Some("Bearer abc".to_string()),
        Some(basic("no-colon")),
    ] {
        let res = ask(wrong.clone()).await;
        assert_eq!(res.head.status, 407, "{wrong:?}");
        assert_eq!(
            res.header("proxy-authenticate").as_deref(),
            Some("Basic realm=\"proxylab\""),
            "{wrong:?}"
        );
        assert!(!res.text().contains("guess"), "{}", res.text());
    }
    assert_eq!(bench.origin.origin().requests(), 0);
    // A 407 to a request read whole (its small body too) keeps the connection, so the
    // authenticated try follows on it, as curl --proxy-anyauth does.
    let mut client = bench.connect().await;
    client
        .send(format!(
            "POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        ))
        .await;
    let challenged = client.read("POST").await;
    assert_eq!(challenged.head.status, 407);
    assert_eq!(challenged.header("connection"), None, "it said close");
    client
        .send(format!(
            "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\n\r\n",
            basic("ann:s3cret")
        ))
        .await;
    assert_eq!(client.read("GET").await.head.status, 200);
    drop(client);
    let res = ask(Some(basic("ann:s3cret"))).await;
    assert_eq!(res.head.status, 200);
    // The credentials are the proxy's: they never reach the origin.
    assert!(!res
        .text()
        .to_ascii_lowercase()
        .contains("proxy-authorization"));
    bench.stop().await;
}
