//! Lab 5 — HTTPS tunnels and filtering: CONNECT with a verified TLS handshake to the origin,
//! a port policy, a blacklist that applies to HTTP and CONNECT alike and can grow while the
//! proxy runs, and an access log.
//!
//! The handout's contract, which the reference runs with: CONNECT is allowed to port 443
//! and to ports 1024–65535, never to others; the blacklist is the file given as `{rules}`
//! (one host or `*.domain` per line); the access log is the file given as `{log}`.
//!
//! A refusal is only worth points next to the matching permission: `port-policy` and
//! `block-connect` first prove that a CONNECT to an allowed port works, and the filtering
//! checks that a plain GET does, so refusing everything earns nothing. Names the lab blocks
//! do not resolve (`.test`), so a proxy that looks a name up before checking the blacklist
//! answers 502 (or hangs on the lookup), never 403; the name that must *not* be blocked is
//! `localhost`, which resolves without DNS.

use super::lab1::{Member, Room};
use super::{
    expect_body, expect_status, get_expecting, get_seeded, no_response, single_get_works, SEED,
};
use crate::harness::{secs, Env};
use crate::{Check, CheckFuture, Fail, Lab};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a change to the rules file may take to apply.
const RELOAD: Duration = Duration::from_secs(5);

pub fn lab() -> Lab {
    Lab {
        number: 5,
        title: "HTTPS tunnels and filtering",
        // --offline: the reference never asks DNS about the lab's made-up names.
        reference_flags: &["--connect-ports", "443,1024-65535", "--rules", "{rules}", "--access-log", "{log}", "--offline"],
        rules: "# the lab's blacklist: one host or *.domain per line\nblocked.lab.test\n*.wild.lab.test\n*.calhost\n",
        chat: false,
        checks: vec![
            Check::new("connect-tls", "CONNECT opens a tunnel in which a TLS handshake with the origin verifies and an HTTPS GET arrives byte-exact", "answer CONNECT with 200, then copy bytes both ways until either side closes; never look inside", connect_tls),
            Check::new("port-policy", "CONNECT to port 25 (mail) is refused with 403, while CONNECT to an allowed port works", "only tunnel to the ports the handout allows (443, 1024-65535); answer others 403", port_policy),
            Check::new("block-http", "a request for a blacklisted host gets 403, before any name lookup", "compare the requested host with each blacklist line exactly (not as a substring of the URL), before resolving it", block_http),
            Check::new("block-wildcard", "*.domain blocks the domain and names under it, and nothing else (*.calhost does not block localhost)", "*.example.test matches example.test and a.example.test, but not badexample.test: compare whole labels", block_wildcard),
            Check::new("block-connect", "CONNECT to a blacklisted host gets 403 on a port CONNECT may otherwise use", "filter CONNECT's host:port by the same rules as plain requests", block_connect),
            Check::new("rule-added-live", "a host added to the blacklist while the proxy runs is blocked within 5 seconds", "re-read the file when it changes (watch it, or check its modification time) instead of only at start", rule_added),
            Check::new("access-log", "each request gets an access log line naming its URL", "append one line per request to the log file and flush it", access_log),
            Check::new("chat-tunnel", "two chat clients talk through CONNECT tunnels to the chat room, each hearing the other without speaking first", "a tunnel must relay in both directions at once, each on its own (two threads, or select on both sockets), for as long as the connection lives", chat_tunnel),
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
    let proxy = env.subject.to_string();
    match tokio::time::timeout(env.step, client::net::connect(target, Some(&proxy))).await {
        Err(_) => Err(Fail::new(
            format!("sent CONNECT {target}; no answer within {}", secs(env.step)),
            reproduce,
        )),
        Ok(Ok(stream)) => Ok((200, Some(stream))),
        Ok(Err(client::net::NetError::TunnelRefused { status, .. })) => Ok((status, None)),
        Ok(Err(e)) => Err(no_response(format!("CONNECT {target}: {e}"), &reproduce)),
    }
}

/// The echo server's address, `127.0.0.1:PORT` (a port CONNECT may use).
fn echo_target(env: &Env) -> Result<String, Fail> {
    env.origin
        .echo_addr()
        .map(|a| a.to_string())
        .ok_or_else(|| Fail::new("origin-sim has no echo server", ""))
}

/// Proves a CONNECT to an allowed port works (the echo server answers through it);
/// otherwise the check is not judged: `connect-tls` grades tunnels.
async fn tunnel_works(env: &Env) -> Result<(), Fail> {
    let target = echo_target(env)?;
    let reproduce = format!(
        "{} echo --server {target} --proxy {} hello",
        crate::harness::client_bin(),
        env.subject
    );
    let result = async {
        let (status, stream) = connect(env, &target).await?;
        let Some(mut stream) = stream else {
            return Err(Fail::new(
                format!("CONNECT {target} was answered {status}, not 200"),
                &reproduce,
            ));
        };
        const PING: &[u8] = b"ping through the tunnel\n";
        let echoed = async {
            stream.write_all(PING).await?;
            let mut back = vec![0u8; PING.len()];
            stream.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(back)
        };
        match tokio::time::timeout(env.step, echoed).await {
            Ok(Ok(back)) if back == PING => Ok(()),
            Ok(Ok(back)) => Err(Fail::new(
                format!(
                    "the echo server's answer came back changed: {:?}",
                    String::from_utf8_lossy(&back)
                ),
                &reproduce,
            )),
            Ok(Err(e)) => Err(Fail::new(format!("through the tunnel: {e}"), &reproduce)),
            Err(_) => Err(Fail::new(
                format!(
                    "bytes sent into the tunnel did not come back from the echo server within {}",
                    secs(env.step)
                ),
                &reproduce,
            )),
        }
    }
    .await;
    result.map_err(|f| {
        Fail::not_judged(
            f,
            "CONNECT to an allowed port does not work",
            "lab 5 connect-tls",
        )
    })
}

fn connect_tls(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(tls_addr) = env.origin.tls_addr() else {
            return Err(Fail::new("origin-sim has no TLS listener", ""));
        };
        // By address: `localhost` is the name the blacklist's lookalike rule is about, and
        // only block-wildcard may depend on it. The certificate is checked for localhost.
        let target = tls_addr.to_string();
        let port = tls_addr.port();
        let reproduce = format!("curl -sv -x http://{} --cacert origin-sim-ca.pem --connect-to localhost:{port}:{target} https://localhost:{port}/bytes/1000   (lab repro writes origin-sim-ca.pem)", env.subject);
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
        let handshake = client::net::tls(stream, "localhost", config);
        let mut tls = match tokio::time::timeout(env.step, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                return Err(Fail::new(
                    format!("the TLS handshake through the tunnel failed: {e}"),
                    &reproduce,
                ))
            }
            Err(_) => {
                return Err(Fail::new(
                    format!(
                        "the TLS handshake through the tunnel did not finish within {}",
                        secs(env.step)
                    ),
                    &reproduce,
                ))
            }
        };
        let exchange = async {
            tls.write_all(
                format!("GET /bytes/1000 HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            let mut all = Vec::new();
            tls.read_to_end(&mut all).await?;
            Ok::<_, std::io::Error>(all)
        };
        let all = match tokio::time::timeout(env.step, exchange).await {
            Ok(Ok(all)) => all,
            Ok(Err(e)) => return Err(no_response(format!("through the tunnel: {e}"), &reproduce)),
            Err(_) => {
                return Err(Fail::new(
                    format!("the HTTPS response through the tunnel did not end within {} (the origin closes after it: does the tunnel pass the close on?)", secs(env.step)),
                    &reproduce,
                ))
            }
        };
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
        tunnel_works(env).await?;
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

/// GET `url` expecting 403. The names the lab blocks do not resolve, so another answer, or
/// none within a step, means the name was looked up instead of checked first.
async fn expect_blocked(env: &Env, url: &str) -> Result<(), Fail> {
    let reproduce = env.curl("", url);
    match env.get(url).await {
        Ok(res) if res.status() == 403 => Ok(()),
        Ok(res) => Err(Fail::new(
            format!("{url} was answered {} {}, not 403", res.status(), res.head.reason),
            &reproduce,
        )
        .hint(if res.status() >= 500 {
            "the host was looked up (it does not resolve) instead of being refused: check the blacklist before resolving the name"
        } else {
            "compare the request's host with each blacklist line (exactly, or as *.domain) and answer 403 when one matches"
        })),
        Err(e) => Err(Fail::new(format!("{url}: {e}"), &reproduce).hint(
            "no 403 came back in time: if the proxy resolves the name first (it does not resolve, the lookup can take long), check the blacklist before resolving",
        )),
    }
}

fn block_http(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        // blocked.lab.test is in the file from the start.
        expect_blocked(env, "http://blocked.lab.test/").await
    })
}

/// Asks until `url` is answered 403 or the reload deadline passes.
async fn wait_for_403(env: &Env, url: &str) -> Result<(), Fail> {
    let deadline = tokio::time::Instant::now() + RELOAD;
    loop {
        let reproduce = env.curl("", url);
        let last = get_expecting(env, url, 403).await.map(|_| ());
        if last.is_ok() || tokio::time::Instant::now() > deadline {
            return last.map_err(|f| Fail::new(f.what, reproduce));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn block_wildcard(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        expect_blocked(env, "http://a.wild.lab.test/").await?;
        expect_blocked(env, "http://wild.lab.test/").await?;
        // `*.calhost` must not match `localhost`: "calhost" is not a label of it. localhost
        // resolves without DNS, so the answer is the page, unless the rule matched.
        let path = "/text/10?lab=wildcard";
        let url = format!("http://localhost:{}{path}", env.origin.addr().port());
        let reproduce = env.curl("", &url);
        let res = env
            .get(&url)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        if res.status() == 403 {
            return Err(Fail::new(
                "localhost was blocked by the rule *.calhost: the rule matched part of a label (a substring or suffix test)",
                reproduce,
            ));
        }
        expect_status(&res, 200, &reproduce)?;
        expect_body(
            &res.body,
            &origin_sim::seeded_for(SEED, path, 10),
            &reproduce,
        )
    })
}

fn block_connect(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        tunnel_works(env).await?;
        // The same port the working tunnel used: a 403 here can only be the blacklist's.
        let port = env.origin.echo_addr().map_or(443, |a| a.port());
        let target = format!("blocked.lab.test:{port}");
        let (status, _) = connect(env, &target).await?;
        if status == 403 {
            Ok(())
        } else {
            Err(Fail::new(
                format!("CONNECT {target} was answered {status}, not 403 (CONNECT to port {port} of 127.0.0.1 works)"),
                format!(
                    "curl -sv -p -x http://{} https://{target}/",
                    env.subject
                ),
            ))
        }
    })
}

fn rule_added(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        // The origin's own address becomes the blocked host (no name to resolve, and not
        // `localhost`, which the lookalike rule is about).
        let path = "/text/10?lab=rule-added";
        let url = env.url(path);
        let host = env.origin.addr().ip().to_string();
        let reproduce = env.curl("", &url);
        append_rule(env, &host)?;
        wait_for_403(env, &url).await.map_err(|f| {
            Fail::new(
                format!(
                    "{} after {host} was added to the rules file, it was still served: {}",
                    secs(RELOAD),
                    f.what
                ),
                format!(
                    "{reproduce}   (after: echo {host} >> {})",
                    env.files.rules.display()
                ),
            )
        })
    })
}

fn access_log(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let path = "/text/7?lab=access-log";
        get_seeded(env, path, 7).await?;
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

fn chat_tunnel(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        tunnel_works(env).await?;
        let Some(chat) = env.origin.chat_addr() else {
            return Err(Fail::new("origin-sim has no chat room", ""));
        };
        let target = chat.to_string();
        let reproduce = format!(
            "{} chat --server {target} --proxy {} --name alice   (and bob, in another terminal)",
            crate::harness::client_bin(),
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
            let (read, write) = tokio::io::split(stream);
            let mut member = Member::over(name, read, write, env.step, &reproduce);
            member.say(&format!("/name {name}")).await?;
            members.push(member);
        }
        let mut room = Room { members };
        room.sync(env.step).await?;
        // bob speaks three times in a row; alice only listens. A relay that waits for the
        // client to speak before it reads the server again (half-duplex) stops after one.
        let [alice, bob] = &mut room.members[..] else {
            return Err(Fail::new("the room has not two members", ""));
        };
        for word in ["one", "two", "three"] {
            bob.say(&format!("bob says {word}")).await?;
        }
        for word in ["one", "two", "three"] {
            alice.hear(&format!("bob says {word}")).await.map_err(|f| {
                Fail::new(
                    format!("alice, who said nothing meanwhile, did not hear bob's line {word:?} through her tunnel: {}", f.what),
                    f.reproduce,
                )
            })?;
        }
        alice.say("hello through the tunnel").await?;
        bob.hear("hello through the tunnel").await.map(|_| ())
    })
}
