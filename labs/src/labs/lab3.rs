//! Lab 3 — concurrency: the proxy serves many clients at once. Proven causally: the origin
//! holds a response (a "gate") until the check has seen what it needs, so a proxy that
//! serves one client at a time cannot pass by being fast.

use super::{expect_status, no_response, single_get_works};
use crate::harness::{secs, sh, Conn, Env, Response};
use crate::{Check, CheckFuture, Fail, Lab};
use std::time::Duration;

pub fn lab() -> Lab {
    Lab {
        number: 3,
        title: "Concurrency",
        reference_flags: &[],
        rules: "",
        chat: false,
        checks: vec![
            Check::new("overlap", "a second client is served while the first one's response is still on its way", "serve each client in its own thread (or task, or select loop): a proxy that handles one client at a time makes the second wait for the first", overlap),
            Check::new("fifty-clients", "50 clients' requests all reach the origin at the same time", "do not cap concurrency below 50, and never hold a lock while waiting on the network", fifty),
            Check::new("slow-client", "a client that sends half a request and stalls does not stop others from being served", "a recv() that waits for one client must not block the others: one thread per client, or non-blocking sockets", slow_client),
            Check::new("beyond-limit", "80 clients arriving at once are all served (those over a connection limit wait for a free slot)", "when you limit connections, make the extra clients wait rather than refusing or dropping them", beyond_limit),
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

/// Waits until the origin has received `n` requests in all (or a step's deadline passes).
async fn origin_saw(env: &Env, n: u64) -> bool {
    let deadline = tokio::time::Instant::now() + env.step;
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
        single_get_works(env).await?;
        let before = env.origin.origin().requests();
        let held = env.url("/gate/overlap");
        let quick = env.url("/text/10");
        let reproduce = format!(
            "{} & {}   (the first is held by the origin until {} is fetched)",
            env.curl("", &held),
            env.curl("", &quick),
            env.url("/open/overlap")
        );
        let mut first = start_get(env, &held, &reproduce).await?;
        let result = async {
            if !origin_saw(env, before + 1).await {
                return Err(Fail::new(
                    format!("the first request never reached the origin within {}", secs(env.step)),
                    &reproduce,
                ));
            }
            let mut second = start_get(env, &quick, &reproduce).await?;
            finish(&mut second, &reproduce).await.map_err(|f| {
                if f.what.contains("no response head") {
                    Fail::new(
                        format!("while the first client's response was held at the origin, the second client got no answer: {}", f.what),
                        &reproduce,
                    )
                } else {
                    // The second client got something, only not the right thing: not a
                    // concurrency problem.
                    Fail::new(format!("the second client's response: {}", f.what), &reproduce)
                        .hint("the second client's request was served, but not correctly: see what happened")
                }
            })
        }
        .await;
        env.origin.origin().open_gate("overlap");
        result?;
        finish(&mut first, &reproduce).await.map(|_| ())
    })
}

fn fifty(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let before = env.origin.origin().requests();
        let reproduce = format!(
            "for i in $(seq 50); do curl -s -x http://{} {}$i & done   (then fetch {})",
            env.subject,
            sh(&env.url("/gate/fifty?n=")),
            env.url("/open/fifty")
        );
        let mut conns = Vec::new();
        for i in 0..50 {
            conns.push(start_get(env, &env.url(&format!("/gate/fifty?n={i}")), &reproduce).await?);
        }
        let all_there = origin_saw(env, before + 50).await;
        let seen = env.origin.origin().requests() - before;
        env.origin.origin().open_gate("fifty");
        if !all_there {
            let fail = Fail::new(
                format!("only {seen} of 50 concurrent requests reached the origin while their responses were held"),
                &reproduce,
            );
            return Err(if seen <= 1 {
                fail.hint("clients are served one at a time: serve each in its own thread (or task, or select loop)")
            } else {
                fail.hint(format!("at most {seen} clients are served at once: do not cap concurrency (a thread pool, a semaphore, a listen backlog) below 50"))
            });
        }
        for conn in &mut conns {
            finish(conn, &reproduce).await?;
        }
        Ok(())
    })
}

fn slow_client(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let url = env.url("/text/10");
        let reproduce = format!(
            "(printf 'GET {url} HTTP/1.1\\r\\nHo'; sleep 30) | {} echo --server {} & {}",
            crate::harness::client_bin(),
            env.subject,
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
        // Once the subject has taken the first half in, the rest comes as a separate
        // piece: a program that takes one recv() for the whole head shows it.
        slow.until_read().await;
        let mut other = start_get(env, &url, &reproduce).await?;
        finish(&mut other, &reproduce).await.map_err(|f| {
            Fail::new(
                format!("a client that stalled in the middle of its request head kept another client from being answered: {}", f.what),
                &reproduce,
            )
        })?;
        slow.send(rest.as_bytes())
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        finish(&mut slow, &reproduce).await.map(|_| ()).map_err(|f| {
            Fail::new(
                format!("the other client was served; then the slow client, whose request head came in two pieces, got: {}", f.what),
                &reproduce,
            )
            .hint("a request head may arrive in several recv()s: keep reading until the empty line (\\r\\n\\r\\n) before parsing it")
        })
    })
}

fn beyond_limit(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
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

/// One GET on `conn`.
async fn exchange(conn: &mut Conn, url: &str) -> Result<Response, String> {
    conn.send_request("GET", url, &[], b"").await?;
    conn.read("GET").await
}

/// How long one level of the sweep runs, at most.
pub const SWEEP_LEVEL: Duration = Duration::from_secs(2);

/// Reported after lab 3's checks, never graded (speed depends on the machine): requests
/// per second through the subject with 1, 4, 16 and 64 keep-alive clients (a new
/// connection when a response closes one), each making up to 200 requests for 100 bytes. Bounded: each level stops after [`SWEEP_LEVEL`] (every
/// request with the step deadline), the first level that fails ends the sweep, and the
/// lines say how long it really took.
pub async fn sweep(
    subject: &crate::harness::Subject,
    options: &crate::Options,
) -> Result<(String, Vec<(usize, f64)>), String> {
    let lab = lab();
    let env = Env::start(subject, &lab, "sweep", options)
        .await
        .map_err(|e| e.to_string())?;
    let url = env.url("/text/100");
    let mut out = format!(
        "\nConcurrency sweep (reported, not graded): up to 200 requests per client, at most {} per level\n",
        secs(SWEEP_LEVEL)
    );
    let all = std::time::Instant::now();
    let mut points = Vec::new();
    for clients in [1usize, 4, 16, 64] {
        let started = std::time::Instant::now();
        let stop_at = tokio::time::Instant::now() + SWEEP_LEVEL;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let mut failed = None;
        for _ in 0..clients {
            let mut conn = match env.connect().await {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let (url, done) = (url.clone(), done.clone());
            let (subject, step, capture) = (env.subject, env.step, env.capture.clone());
            tasks.spawn(async move {
                // Whether `conn` has carried a request already.
                let mut used = false;
                for _ in 0..200 {
                    if tokio::time::Instant::now() >= stop_at {
                        break;
                    }
                    let mut res = exchange(&mut conn, &url).await;
                    // A proxy that closes a connection after each response (HTTP/1.0 style)
                    // is measured too: as a browser does, a request that a reused connection
                    // closed on is sent again on a new one (RFC 9112 §9.3.1).
                    if res.is_err() && used {
                        conn = Conn::open(subject, step, capture.clone()).await?;
                        res = exchange(&mut conn, &url).await;
                    }
                    let res = res?;
                    used = true;
                    if res.status() != 200 {
                        return Err(format!("status {}", res.status()));
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !res.head.keeps_alive() {
                        conn = Conn::open(subject, step, capture.clone()).await?;
                        used = false;
                    }
                }
                Ok::<(), String>(())
            });
        }
        // Every task ends by itself within a level and one step; the bound is a backstop.
        let bound = tokio::time::sleep_until(stop_at + env.step + Duration::from_secs(1));
        tokio::pin!(bound);
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => { failed.get_or_insert(e); }
                    Some(Err(e)) => { failed.get_or_insert(e.to_string()); }
                },
                _ = &mut bound => {
                    failed.get_or_insert("clients still waiting when the level's time was up".into());
                    tasks.abort_all();
                    break;
                }
            }
        }
        let secs_taken = started.elapsed().as_secs_f64();
        let n = done.load(std::sync::atomic::Ordering::Relaxed);
        match failed {
            None => {
                let rate = n as f64 / secs_taken;
                points.push((clients, rate));
                out.push_str(&format!(
                    "  {clients:>3} client(s): {rate:>8.0} requests/s ({n} requests in {secs_taken:.1} s)\n"
                ))
            }
            Some(e) => {
                out.push_str(&format!(
                    "  {clients:>3} client(s): failed after {n} requests ({e}); the sweep stops here\n"
                ));
                break;
            }
        }
    }
    out.push_str(&format!(
        "  (the sweep took {:.1} s)\n",
        all.elapsed().as_secs_f64()
    ));
    env.stop().await;
    Ok((out, points))
}
