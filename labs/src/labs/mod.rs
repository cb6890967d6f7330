//! The checks of each lab, and the small helpers they share.
//!
//! A check that builds on a basic ability proves that ability on its own first
//! ([`single_get_works`], [`caching_works`], …): when it is missing, the check is *not
//! judged* and names the check that grades it, so one defect costs its own points once and
//! no hint blames a feature the program may well have.

pub mod lab1;
pub mod lab2;
pub mod lab3;
pub mod lab4;
pub mod lab5;

use crate::harness::{Env, Response};
use crate::Fail;

/// The seed origin-sim runs with (bodies are `origin_sim::seeded_body(SEED, n)`).
pub const SEED: u64 = origin_sim::DEFAULT_SEED;

/// A failure of the request itself (no response), with its reproducer.
pub fn no_response(err: String, reproduce: &str) -> Fail {
    Fail::new(err, reproduce)
}

/// Fails unless `res` has `status`.
pub fn expect_status(res: &Response, status: u16, reproduce: &str) -> Result<(), Fail> {
    if res.status() == status {
        Ok(())
    } else {
        Err(Fail::new(
            format!(
                "expected status {status}, got {} {} ({} body bytes{})",
                res.status(),
                res.head.reason,
                res.body.len(),
                first_line(&res.text())
            ),
            reproduce,
        ))
    }
}

fn first_line(text: &str) -> String {
    match text.lines().next() {
        Some(l) if !l.trim().is_empty() => {
            format!(": {:?}", l.chars().take(100).collect::<String>())
        }
        _ => String::new(),
    }
}

/// Fails unless `body` is exactly `expected`, saying where they first differ.
pub fn expect_body(body: &[u8], expected: &[u8], reproduce: &str) -> Result<(), Fail> {
    if body == expected {
        return Ok(());
    }
    let diff = crate::Diff::between(body, expected);
    let mut fail = Fail::new(
        format!(
            "the body differs from what the origin sent: {} bytes arrived, {} expected, first difference at byte {}",
            body.len(),
            expected.len(),
            diff.at
        ),
        reproduce,
    );
    fail.diff = Some(Box::new(diff));
    Err(fail)
}

/// GET `path` on the origin through the subject, expecting 200.
pub async fn get_ok(env: &Env, path: &str) -> Result<Response, Fail> {
    get_expecting(env, &env.url(path), 200).await
}

/// GET `url` through the subject, expecting `status`.
pub async fn get_expecting(env: &Env, url: &str, status: u16) -> Result<Response, Fail> {
    let reproduce = env.curl("", url);
    let res = env.get(url).await.map_err(|e| no_response(e, &reproduce))?;
    expect_status(&res, status, &reproduce)?;
    Ok(res)
}

/// GET `path` through the subject and check the body is the origin's seeded `len` bytes;
/// a failure carries a hint chosen from what the origin saw.
pub async fn get_seeded(env: &Env, path: &str, len: u64) -> Result<Response, Fail> {
    let url = env.url(path);
    let reproduce = env.curl("", &url);
    let result = async {
        let res = env
            .get(&url)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        expect_body(&res.body, &origin_sim::seeded_body(SEED, len), &reproduce)?;
        Ok(res)
    }
    .await;
    result.map_err(|f: Fail| {
        let hint = diagnose(env, path, &f.what);
        f.hint(hint)
    })
}

/// A hint for a GET of `path` that failed with `what`, from what the origin saw of it.
pub fn diagnose(env: &Env, path: &str, what: &str) -> String {
    let seen = env.seen(path);
    if seen.is_empty() {
        return "the request never reached the origin: take host and port from the absolute \
                URL (http://host:port/path), connect there, and send the request"
            .into();
    }
    if seen.len() > 1 {
        return format!(
            "the origin received this request {} times: send each request once",
            seen.len()
        );
    }
    if what.contains("no response head") || what.contains("closed without a response") {
        return "the origin answered, but its response did not come back: read the origin's \
                response and write all of it to the client"
            .into();
    }
    if what.contains("body") {
        return "relay every byte of the response: loop on recv() until the body is complete \
                (by Content-Length, chunked framing, or the origin's close), and treat it as \
                bytes, not text"
            .into();
    }
    "pass the origin's response through as it came: status line, headers and body".into()
}

/// Proves a single GET through the subject works (100 bytes, byte-exact); otherwise the
/// check is not judged: lab 2 get-small grades that.
pub async fn single_get_works(env: &Env) -> Result<(), Fail> {
    get_seeded(env, "/bytes/100?lab=single-get", 100)
        .await
        .map(|_| ())
        .map_err(|f| Fail::not_judged(f, "a single GET already fails", "lab 2 get-small"))
}

/// Proves the subject serves a fresh response from its cache (a second GET of a
/// `max-age=60` response never reaches the origin); otherwise the check is not judged: lab
/// 4 hit grades that.
pub async fn caching_works(env: &Env) -> Result<(), Fail> {
    single_get_works(env).await?;
    let path = "/cache/60?lab=caching-works";
    let url = env.url(path);
    let reproduce = format!("{}   (twice; compare X-Origin-Hits)", env.curl("", &url));
    for _ in 0..2 {
        get_expecting(env, &url, 200)
            .await
            .map_err(|f| Fail::not_judged(f, "a cacheable GET already fails", "lab 4 hit"))?;
    }
    match env.hits(path) {
        1 => Ok(()),
        n => Err(Fail::not_judged(
            Fail::new(
                format!("a max-age=60 response fetched twice reached the origin {n} times"),
                reproduce,
            ),
            "nothing is served from the cache",
            "lab 4 hit",
        )),
    }
}
