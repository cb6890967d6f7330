//! Lab 3 — concurrency: the proxy serves many clients at once. Proven causally: the origin
//! holds a response (a "gate") until the check has seen what it needs, so a proxy that
//! serves one client at a time cannot pass by being fast.

use super::{expect_status, no_response};
use crate::harness::{Conn, Env, Response};
use crate::{Check, CheckFuture, Fail, Lab};
use std::time::Duration;

/// How long a check waits for something that a concurrent proxy does at once.
const WAIT: Duration = Duration::from_secs(5);

pub fn lab() -> Lab {
    Lab {
        number: 3,
        title: "Concurrency",
        reference_flags: &[],
        rules: "",
        chat: false,
        checks: vec![
            Check { id: "overlap", points: 25, proves: "a second client is served while the first one's response is still on its way", hint: "serve each client in its own thread (or task, or select loop): a proxy that handles one client at a time makes the second wait for the first", run: overlap },
            Check { id: "fifty-clients", points: 25, proves: "50 clients' requests all reach the origin at the same time", hint: "do not cap concurrency below 50, and never hold a lock while waiting on the network", run: fifty },
            Check { id: "slow-client", points: 25, proves: "a client that sends half a request and stalls does not stop others from being served", hint: "a recv() that waits for one client must not block the others: one thread per client, or non-blocking sockets", run: slow_client },
            Check { id: "beyond-limit", points: 25, proves: "80 clients arriving at once are all served (those over a connection limit wait for a free slot)", hint: "when you limit connections, make the extra clients wait rather than refusing or dropping them", run: beyond_limit },
        ],
    }
}

/// Starts a GET on a new connection and returns the connection to read from later.
async fn start_get(env: &Env, url: &str, reproduce: &str) -> Result<Conn, Fail> {
    let mut conn = env.connect().await.map_err(|e| no_response(e, reproduce))?;
    conn.send_request("GET", url, &[], b"")
        .await
        .map_err(|e| no_response(e, reproduce))?;
    Ok(conn)
}

async fn finish(conn: &mut Conn, reproduce: &str) -> Result<Response, Fail> {
    let res = conn
        .read("GET")
        .await
        .map_err(|e| no_response(e, reproduce))?;
    expect_status(&res, 200, reproduce)?;
    Ok(res)
}

/// Waits until the origin has received `n` requests in all (or the deadline passes).
async fn origin_saw(env: &Env, n: u64) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.origin.origin().requests() < n {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn overlap(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let held = env.url("/gate/overlap");
        let quick = env.url("/bytes/10");
        let reproduce = format!(
            "{} & {}   (the first is held by the origin until {} is fetched)",
            env.curl("", &held),
            env.curl("", &quick),
            env.url("/open/overlap")
        );
        let mut first = start_get(env, &held, &reproduce).await?;
        let result = async {
            if !origin_saw(env, 1).await {
                return Err(Fail::new("the first request never reached the origin", &reproduce));
            }
            let mut second = start_get(env, &quick, &reproduce).await?;
            match tokio::time::timeout(WAIT, finish(&mut second, &reproduce)).await {
                Ok(r) => r.map(|_| ()),
                Err(_) => Err(Fail::new(
                    format!("while the first client's response was held at the origin, the second client got no answer within {WAIT:?}: clients are served one at a time"),
                    &reproduce,
                )),
            }
        }
        .await;
        env.origin.origin().open_gate("overlap");
        result?;
        finish(&mut first, &reproduce).await.map(|_| ())
    })
}

fn fifty(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let reproduce = format!(
            "for i in $(seq 50); do curl -s -x http://{} '{}?n='$i & done   (then fetch {})",
            env.subject,
            env.url("/gate/fifty"),
            env.url("/open/fifty")
        );
        let mut conns = Vec::new();
        for i in 0..50 {
            conns.push(start_get(env, &env.url(&format!("/gate/fifty?n={i}")), &reproduce).await?);
        }
        let all_there = origin_saw(env, 50).await;
        let seen = env.origin.origin().requests();
        env.origin.origin().open_gate("fifty");
        if !all_there {
            return Err(Fail::new(
                format!("only {seen} of 50 concurrent requests reached the origin while their responses were held"),
                &reproduce,
            ));
        }
        for conn in &mut conns {
            finish(conn, &reproduce).await?;
        }
        Ok(())
    })
}

fn slow_client(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let url = env.url("/bytes/10");
        let reproduce = format!(
            "(printf 'GET {url} HTTP/1.1\\r\\nHo'; sleep 30) | nc {} {} & {}",
            env.subject.ip(),
            env.subject.port(),
            env.curl("", &url)
        );
        let mut slow = env
            .connect()
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let head = format!("GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n", env.origin.addr());
        let (part, rest) = head.split_at(head.len() / 2);
        slow.send(part.as_bytes())
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let mut other = start_get(env, &url, &reproduce).await?;
        match tokio::time::timeout(WAIT, finish(&mut other, &reproduce)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Fail::new(
                    format!("a client that stalled in the middle of its request kept another from being answered for {WAIT:?}"),
                    &reproduce,
                ))
            }
        };
        slow.send(rest.as_bytes())
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        finish(&mut slow, &reproduce).await.map(|_| ())
    })
}

fn beyond_limit(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let url = env.url("/delay/20");
        let reproduce = format!(
            "for i in $(seq 80); do curl -s -o /dev/null -w '%{{http_code}}\\n' -x http://{} {url} & done; wait",
            env.subject
        );
        // Each client leaves after its response (Connection: close), as browsers' extra
        // connections do: a proxy that serves one connection at a time still serves all.
        let mut conns = Vec::new();
        for _ in 0..80 {
            let mut conn = env
                .connect()
                .await
                .map_err(|e| no_response(e, &reproduce))?;
            conn.send_request("GET", &url, &[("Connection", "close")], b"")
                .await
                .map_err(|e| no_response(e, &reproduce))?;
            conns.push(conn);
        }
        let mut served = 0;
        // Each connection is closed once answered, as a client that got its response does.
        for mut conn in conns {
            match finish(&mut conn, &reproduce).await {
                Ok(_) => served += 1,
                Err(f) => {
                    return Err(Fail::new(
                        format!("{served} of 80 clients were served, then: {}", f.what),
                        &reproduce,
                    ))
                }
            }
        }
        Ok(())
    })
}

/// Reported after lab 3's checks, never graded (speed depends on the machine): requests
/// per second through the subject with 1, 4, 16 and 64 keep-alive clients, each making
/// 200 requests for 100 bytes.
pub async fn sweep(subject: &crate::harness::Subject) -> Result<String, String> {
    let env = Env::start(subject, "", false, None)
        .await
        .map_err(|e| e.to_string())?;
    let url = env.url("/bytes/100");
    let mut out =
        String::from("\nConcurrency sweep (reported, not graded): 200 requests per client\n");
    for clients in [1usize, 4, 16, 64] {
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut conn = env.connect().await?;
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    conn.send_request("GET", &url, &[], b"").await?;
                    let res = conn.read("GET").await?;
                    if res.status() != 200 {
                        return Err(format!("status {}", res.status()));
                    }
                }
                Ok::<(), String>(())
            }));
        }
        let mut failed = None;
        for t in tasks {
            if let Ok(Err(e)) | Err(e) = t.await.map_err(|e| e.to_string()) {
                failed = Some(e);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        match failed {
            None => out.push_str(&format!(
                "  {clients:>3} client(s): {:>8.0} requests/s\n",
                (clients * 200) as f64 / secs
            )),
            Some(e) => out.push_str(&format!("  {clients:>3} client(s): failed ({e})\n")),
        }
    }
    env.stop().await;
    Ok(out)
}
