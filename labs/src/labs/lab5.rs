//! Lab 5 — HTTPS tunnels and filtering: CONNECT with a verified TLS handshake to the origin,
//! a port policy, a blacklist that applies to HTTP and CONNECT alike and can grow while the
//! proxy runs, and an access log.
//!
//! The handout's contract, which the reference runs with: CONNECT is allowed to port 443
//! and to ports 1024–65535, never to others; the blacklist is the file given as `{rules}`
//! (one host or `*.domain` per line); the access log is the file given as `{log}`.

use super::{expect_body, expect_status, get_expecting, get_ok, no_response, SEED};
use crate::harness::Env;
use crate::{Check, CheckFuture, Fail, Lab};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long a change to the rules file may take to apply.
const RELOAD: Duration = Duration::from_secs(5);

pub fn lab() -> Lab {
    Lab {
        number: 5,
        title: "HTTPS tunnels and filtering",
        // --offline: the reference never asks DNS about the lab's made-up names.
        reference_flags: &["--connect-ports", "443,1024-65535", "--rules", "{rules}", "--access-log", "{log}", "--offline"],
        rules: "# the lab's blacklist: one host or *.domain per line\nblocked.lab.test\n*.wild.lab.test\n",
        chat: false,
        checks: vec![
            Check { id: "connect-tls", points: 20, proves: "CONNECT opens a tunnel in which a TLS handshake with the origin verifies and an HTTPS GET arrives byte-exact", hint: "answer CONNECT with 200, then copy bytes both ways until either side closes; never look inside", run: connect_tls },
            Check { id: "port-policy", points: 10, proves: "CONNECT to port 25 (mail) is refused with 403", hint: "only tunnel to the ports the handout allows (443, 1024-65535); answer others 403", run: port_policy },
            Check { id: "block-http", points: 10, proves: "a request for a blacklisted host gets 403, before any name lookup", hint: "compare the requested host with each blacklist line exactly (not as a substring of the URL)", run: block_http },
            Check { id: "block-wildcard", points: 10, proves: "*.domain blocks the domain and names under it, and nothing else", hint: "*.example.test matches example.test and a.example.test, but not badexample.test", run: block_wildcard },
            Check { id: "block-connect", points: 10, proves: "CONNECT to a blacklisted host gets 403", hint: "filter CONNECT's host:port by the same rules as plain requests", run: block_connect },
            Check { id: "rule-added-live", points: 15, proves: "a host added to the blacklist while the proxy runs is blocked within 5 seconds", hint: "re-read the file when it changes (watch it, or check its modification time) instead of only at start", run: rule_added },
            Check { id: "access-log", points: 10, proves: "each request gets an access log line naming its URL", hint: "append one line per request to the log file and flush it", run: access_log },
            Check { id: "chat-tunnel", points: 15, proves: "two chat clients talk through CONNECT tunnels to the chat room", hint: "a tunnel must relay in both directions at once, each on its own, for as long as the connection lives", run: chat_tunnel },
        ],
    }
}

/// Writes the blacklist the way the seed's block.py did: appending a line.
fn append_rule(env: &Env, line: &str) -> Result<(), Fail> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&env.files.rules)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|e| {
            Fail::new(
                format!("the harness could not write the rules file: {e}"),
                "",
            )
        })
}

/// Sends CONNECT; returns the answer's status and, when it was 2xx, the tunnel.
async fn connect(env: &Env, target: &str) -> Result<(u16, Option<client::net::Stream>), Fail> {
    let reproduce = format!("curl -sv -p -x http://{} https://{target}/", env.subject);
    match client::net::connect(target, Some(&env.subject.to_string())).await {
        Ok(stream) => Ok((200, Some(stream))),
        Err(client::net::NetError::TunnelRefused { status, .. }) => Ok((status, None)),
        Err(e) => Err(no_response(format!("CONNECT {target}: {e}"), &reproduce)),
    }
}

fn connect_tls(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(tls) = env.origin.tls_addr() else {
            return Err(Fail::new("origin-sim has no TLS listener", ""));
        };
        let target = format!("localhost:{}", tls.port());
        let reproduce = format!("curl -sv -x http://{} --cacert ca.pem https://{target}/bytes/1000   (ca.pem: origin-sim --ca-out)", env.subject);
        let (status, stream) = connect(env, &target).await?;
        let Some(stream) = stream else {
            return Err(Fail::new(
                format!("CONNECT {target} was answered {status}, not 200"),
                reproduce,
            ));
        };
        let pem = env.origin.ca_pem().unwrap_or_default();
        let config = client::net::tls_config_from_pem(pem.as_bytes(), "origin-sim's CA")
            .map_err(|e| Fail::new(format!("the origin's CA did not load: {e}"), ""))?;
        let mut tls = client::net::tls(stream, "localhost", config)
            .await
            .map_err(|e| {
                Fail::new(
                    format!("the TLS handshake through the tunnel failed: {e}"),
                    &reproduce,
                )
            })?;
        tls.write_all(
            format!("GET /bytes/1000 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| no_response(e.to_string(), &reproduce))?;
        let mut all = Vec::new();
        tls.read_to_end(&mut all)
            .await
            .map_err(|e| no_response(format!("reading through the tunnel: {e}"), &reproduce))?;
        let at = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or(all.len());
        if !all.starts_with(b"HTTP/1.1 200") {
            return Err(Fail::new(
                "the HTTPS response through the tunnel was not 200",
                reproduce,
            ));
        }
        expect_body(&all[at..], &origin_sim::seeded_body(SEED, 1000), &reproduce)
    })
}

fn port_policy(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let (status, _) = connect(env, "127.0.0.1:25").await?;
        if status == 403 {
            Ok(())
        } else {
            Err(Fail::new(
                format!("CONNECT 127.0.0.1:25 was answered {status}, not 403"),
                format!(
                    "curl -sv -p -x http://{} telnet://127.0.0.1:25",
                    env.subject
                ),
            ))
        }
    })
}

async fn expect_blocked(env: &Env, url: &str) -> Result<(), Fail> {
    get_expecting(env, url, 403).await.map(|_| ())
}

fn block_http(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        // blocked.lab.test is in the file from the start.
        expect_blocked(env, "http://blocked.lab.test/").await?;
        // The origin itself is not blocked.
        get_ok(env, "/bytes/10").await.map(|_| ())
    })
}

/// Asks until `url` is answered 403 or the reload deadline passes.
async fn wait_for_403(env: &Env, url: &str) -> Result<(), Fail> {
    let deadline = tokio::time::Instant::now() + RELOAD;
    loop {
        let last = expect_blocked(env, url).await;
        if last.is_ok() || tokio::time::Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn block_wildcard(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        expect_blocked(env, "http://a.wild.lab.test/").await?;
        expect_blocked(env, "http://wild.lab.test/").await?;
        // A lookalike is not under the domain: it must not be blocked. It does not resolve,
        // so a proxy that lets it through answers 502 (or another error), never 403.
        let url = "http://badwild.lab.test/";
        let reproduce = env.curl("", url);
        let res = env.get(url).await.map_err(|e| no_response(e, &reproduce))?;
        if res.status() == 403 {
            return Err(Fail::new(
                "badwild.lab.test was blocked by *.wild.lab.test: the rule matched a substring",
                reproduce,
            ));
        }
        Ok(())
    })
}

fn block_connect(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let (status, _) = connect(env, "blocked.lab.test:443").await?;
        if status == 403 {
            Ok(())
        } else {
            Err(Fail::new(
                format!("CONNECT blocked.lab.test:443 was answered {status}, not 403"),
                format!(
                    "curl -sv -p -x http://{} https://blocked.lab.test/",
                    env.subject
                ),
            ))
        }
    })
}

fn rule_added(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let url = format!("http://localhost:{}/bytes/10", env.origin.addr().port());
        let reproduce = env.curl("", &url);
        let res = env
            .get(&url)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        append_rule(env, "localhost")?;
        wait_for_403(env, &url).await.map_err(|f| {
            Fail::new(
                format!("{RELOAD:?} after localhost was added to the rules file, it was still served: {}", f.what),
                format!("{reproduce}   (after: echo localhost >> {})", env.files.rules.display()),
            )
        })
    })
}

fn access_log(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let path = "/bytes/7?lab=access-log";
        get_ok(env, path).await?;
        let url = env.url(path);
        let deadline = tokio::time::Instant::now() + RELOAD;
        loop {
            let text = std::fs::read_to_string(&env.files.log).unwrap_or_default();
            if text.lines().any(|l| l.contains(&url) || l.contains(path)) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Fail::new(
                    format!(
                        "no line of {} names {url} ({} lines in the file)",
                        env.files.log.display(),
                        text.lines().count()
                    ),
                    format!("{}; tail {}", env.curl("", &url), env.files.log.display()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Reads lines from a chat member until one contains `needle`.
async fn wait_for_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    needle: &str,
    reproduce: &str,
) -> Result<(), Fail> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| no_response(e.to_string(), reproduce))?;
        if n == 0 {
            return Err(Fail::new(
                format!("the tunnel closed before {needle:?} arrived"),
                reproduce,
            ));
        }
        if line.contains(needle) {
            return Ok(());
        }
    }
}

fn chat_tunnel(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(chat) = env.origin.chat_addr() else {
            return Err(Fail::new("origin-sim has no chat room", ""));
        };
        let target = chat.to_string();
        let reproduce = format!(
            "client chat {target} --proxy {} --name alice   (and bob, in another terminal)",
            env.subject
        );
        let mut members = Vec::new();
        for name in ["alice", "bob"] {
            let (status, stream) = connect(env, &target).await?;
            let Some(stream) = stream else {
                return Err(Fail::new(
                    format!("CONNECT {target} was answered {status}, not 200"),
                    reproduce,
                ));
            };
            let (read, mut write) = tokio::io::split(stream);
            let mut read = BufReader::new(read);
            // The room's greeting first: then the room knows this member and cannot miss
            // telling it about the next one.
            let mut greeting = String::new();
            read.read_line(&mut greeting)
                .await
                .map_err(|e| no_response(e.to_string(), &reproduce))?;
            write
                .write_all(format!("/name {name}\n").as_bytes())
                .await
                .map_err(|e| no_response(e.to_string(), &reproduce))?;
            members.push((read, write));
        }
        let (alice, bob) = members.split_at_mut(1);
        // Once bob's arrival reached alice, both are in the room.
        wait_for_line(&mut alice[0].0, "bob", &reproduce).await?;
        alice[0]
            .1
            .write_all(b"hello through the tunnel\n")
            .await
            .map_err(|e| no_response(e.to_string(), &reproduce))?;
        wait_for_line(
            &mut bob[0].0,
            "[alice] hello through the tunnel",
            &reproduce,
        )
        .await
    })
}
