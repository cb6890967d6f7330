//! The checks of each lab, and the small helpers they share.

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
    let at = body
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(body.len().min(expected.len()));
    Err(Fail::new(
        format!(
            "the body differs from what the origin sent: {} bytes arrived, {} expected, first difference at byte {at}",
            body.len(),
            expected.len()
        ),
        reproduce,
    ))
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
