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

/// The seed origin-sim runs with (bodies are `origin_sim::seeded_body(SEED, n)`, or
/// `seeded_text` for text routes: `origin_sim::seeded_for` says which).
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
                first_line(&res.body)
            ),
            reproduce,
        ))
    }
}

/// `: "the body's first line"` when the body is text; nothing for an empty or binary body.
fn first_line(body: &[u8]) -> String {
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return String::new();
    };
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.chars().any(|c| c.is_control() && c != '\t') {
        return String::new();
    }
    format!(": {:?}", line.chars().take(100).collect::<String>())
}

/// Fails unless `body` is exactly `expected`, saying where they first differ.
pub fn expect_body(body: &[u8], expected: &[u8], reproduce: &str) -> Result<(), Fail> {
    if body == expected {
        return Ok(());
    }
    let diff = crate::Diff::between(body, expected);
    let mut fail = Fail::new(
        format!(
            "the body differs from what the origin sent: {} bytes arrived, {} expected, first difference at byte {}{}",
            body.len(),
            expected.len(),
            diff.at,
            body_cause(body, expected)
        ),
        reproduce,
    );
    fail.diff = Some(Box::new(diff));
    Err(fail)
}

/// What a wrong body says of its cause, when it says something: text decoding (U+FFFD where
/// the origin sent bytes that are not UTF-8) or a C string (cut at the origin's first NUL).
fn body_cause(body: &[u8], expected: &[u8]) -> &'static str {
    let replacement = "\u{FFFD}".as_bytes();
    let has = |b: &[u8]| memchr::memmem::find(b, replacement).is_some();
    if has(body) && !has(expected) {
        return "; it holds U+FFFD (the bytes EF BF BD) where the origin sent bytes that are not UTF-8: the body went through a text decoder (readLine(), a String, a text stream) — relay a body as bytes";
    }
    if expected.starts_with(body) && expected.get(body.len()) == Some(&0) {
        return "; it stops where the origin sent its first zero byte: the body was handled as a C string (strlen, strcpy, printf \"%s\") — use the byte counts recv() returns";
    }
    ""
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

/// GET `path` through the subject and check the body is the origin's seeded `len` bytes
/// (text or binary, as origin-sim sends them for `path`); a failure carries a hint chosen
/// from what the origin saw.
pub async fn get_seeded(env: &Env, path: &str, len: u64) -> Result<Response, Fail> {
    let url = env.url(path);
    let reproduce = env.curl("", &url);
    let result = async {
        let res = env
            .get(&url)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        expect_body(
            &res.body,
            &origin_sim::seeded_for(SEED, path, len),
            &reproduce,
        )?;
        Ok(res)
    }
    .await;
    result.map_err(|f: Fail| match waits_for_close(env, path, &f) {
        Some(cause) => cause,
        None => {
            let hint = diagnose(env, path, &f.what);
            f.hint(hint)
        }
    })
}

/// A step that ran out while origin-sim had sent its whole response to `path` and kept the
/// connection open, as HTTP/1.1 allows: the program waits for the origin to close before
/// it forwards (a CS:APP-style loop that reads to EOF). That is the cause, not "0 bytes
/// came".
pub fn waits_for_close(env: &Env, path: &str, f: &Fail) -> Option<Fail> {
    let waited = f.what.contains(" within ") || f.what.contains("then nothing for");
    let seen = env.seen(path);
    let last = seen.last()?;
    let open = env.origin.origin().connection_open(last.conn);
    if !waited || !last.answered || !open || seen.len() != 1 {
        return None;
    }
    Some(
        Fail::new(
            format!(
                "origin-sim sent its whole response to `{} {} {}` and kept the connection open, as HTTP/1.1 allows; your program did not pass it on (the client: {}): it seems to wait for the origin to close",
                last.method, last.target, last.version, f.what
            ),
            f.reproduce.clone(),
        )
        .hint("read the response by its Content-Length (or its chunks) and forward it as it comes, without waiting for the connection to end — or send `Connection: close` upstream (or speak HTTP/1.0 there), so the origin closes after it"),
    )
}

/// When the origin received `path` without its query (and never with it): what it got, in
/// words. A program that drops the query reaches the origin all the same; "the request never
/// reached the origin" would name the wrong mistake.
pub fn dropped_query(env: &Env, path: &str) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    if !env.seen(path).is_empty() {
        return None;
    }
    let all = env.origin.origin().seen();
    let got = all.iter().rev().find(|s| s.path == base)?;
    Some(format!(
        "the origin received `{} {} {}`: the request without its query `?{query}` — forward the whole request-target, path and query",
        got.method, got.path, got.version
    ))
}

/// A hint for a GET of `path` that failed with `what`, from what the origin saw of it.
pub fn diagnose(env: &Env, path: &str, what: &str) -> String {
    let seen = env.seen(path);
    if let Some(dropped) = dropped_query(env, path) {
        return dropped;
    }
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
    // Plain text in lines, with a Content-Length: what every later check builds on is
    // forwarding, not binary safety, which lab 2's get-small and get-large-binary grade —
    // a program that mangles binary bodies loses those, not every check after them.
    get_seeded(env, "/text/100?lab=single-get", 100)
        .await
        .map(|_| ())
        .map_err(|f| Fail::not_judged(f, "a single GET already fails", "lab 2 get-small"))
}

/// A response to a GET, and how many requests for its path reached the origin while it was
/// fetched.
pub struct Fetched {
    pub res: Response,
    pub added: u64,
}

/// GET `path` (with `headers`) through the subject, expecting 200, counting what reached
/// the origin meanwhile.
pub async fn fetch(env: &Env, path: &str, headers: &[(&str, &str)]) -> Result<Fetched, Fail> {
    let url = env.url(path);
    let flags: String = headers
        .iter()
        .map(|(n, v)| format!("-H '{n}: {v}' "))
        .collect();
    let reproduce = env.curl(&flags, &url);
    let before = env.hits(path);
    let res = env
        .request("GET", &url, headers, b"")
        .await
        .map_err(|e| no_response(e, &reproduce))?;
    expect_status(&res, 200, &reproduce)?;
    Ok(Fetched {
        res,
        added: env.hits(path).saturating_sub(before),
    })
}

/// Whether `later` is `earlier` served again from a cache. origin-sim stamps every response
/// with its count for the path (`X-Origin-Hits`), so a replayed response carries the stamp of
/// the one stored — whatever else reached the origin meanwhile (a proxy that sends some
/// requests twice is judged on its cache alone). Without the stamp: whether `later` reached
/// the origin at all.
pub fn replayed(earlier: &Fetched, later: &Fetched) -> bool {
    match (
        earlier.res.header("x-origin-hits"),
        later.res.header("x-origin-hits"),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => later.added == 0,
    }
}

/// Whether `later` went to the origin: a request for its path reached the origin while it
/// was fetched, or it is not `earlier` replayed. (A stale entry revalidated with a 304 may
/// keep its stamp; its request still reached the origin.)
pub fn reached_origin(earlier: &Fetched, later: &Fetched) -> bool {
    later.added > 0 || !replayed(earlier, later)
}

/// How a pair of fetches looked from the origin, for messages.
fn stamps(earlier: &Fetched, later: &Fetched) -> String {
    match (
        earlier.res.header("x-origin-hits"),
        later.res.header("x-origin-hits"),
    ) {
        (Some(a), Some(b)) => format!("X-Origin-Hits {a}, then {b}"),
        _ => format!("the origin received {} more request(s)", later.added),
    }
}

/// Fails unless `later` (of `path`) is `earlier` served from the cache.
pub fn expect_cached(
    env: &Env,
    path: &str,
    earlier: &Fetched,
    later: &Fetched,
    why: &str,
) -> Result<(), Fail> {
    if replayed(earlier, later) {
        return Ok(());
    }
    Err(Fail::new(
        format!(
            "{why}: it came from the origin again ({})",
            stamps(earlier, later)
        ),
        twice(env, path),
    ))
}

/// Fails unless `later` (of `path`) went to the origin ([`reached_origin`]).
pub fn expect_refetched(
    env: &Env,
    path: &str,
    earlier: &Fetched,
    later: &Fetched,
    why: &str,
) -> Result<(), Fail> {
    if reached_origin(earlier, later) {
        return Ok(());
    }
    Err(Fail::new(
        format!(
            "{why}: it was served from the cache ({})",
            stamps(earlier, later)
        ),
        twice(env, path),
    ))
}

/// The reproducer of a cache check: the same GET twice, comparing X-Origin-Hits.
fn twice(env: &Env, path: &str) -> String {
    format!(
        "{}   (twice; compare X-Origin-Hits)",
        env.curl("-D - -o /dev/null ", &env.url(path))
    )
}

/// Proves the subject serves a fresh response from its cache (a second GET of a
/// `max-age=60` response is the stored one again); otherwise the check is not judged: lab
/// 4 hit grades that.
pub async fn caching_works(env: &Env) -> Result<(), Fail> {
    single_get_works(env).await?;
    let path = "/cache/60?lab=caching-works";
    let cacheable = |f: Fail| Fail::not_judged(f, "a cacheable GET already fails", "lab 4 hit");
    let first = fetch(env, path, &[]).await.map_err(cacheable)?;
    // Lab 4's checks tell their requests apart by their queries: a program that drops them
    // makes every check's URLs one, and what follows would blame its cache.
    if let Some(dropped) = dropped_query(env, path) {
        return Err(Fail::not_judged(
            Fail::new(dropped, env.curl("", &env.url(path))),
            "the query string does not reach the origin",
            "lab 2 origin-form",
        ));
    }
    let second = fetch(env, path, &[]).await.map_err(cacheable)?;
    expect_cached(
        env,
        path,
        &first,
        &second,
        "a max-age=60 response fetched twice",
    )
    .map_err(|f| Fail::not_judged(f, "nothing is served from the cache", "lab 4 hit"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wrong_body_names_text_decoding_and_c_strings() {
        let binary = [b'a', 0xff, b'b', 0, b'c'];
        assert!(super::body_cause("a\u{FFFD}b\0c".as_bytes(), &binary).contains("text decoder"));
        assert!(super::body_cause(b"a", &[b'a', 0, b'c']).contains("C string"));
        assert_eq!(super::body_cause(b"ab", b"abc"), "");
    }

    use super::first_line;

    #[test]
    fn a_bodys_first_line_is_quoted_only_when_it_is_text() {
        assert_eq!(first_line(b"<p>no</p>\r\nmore"), ": \"<p>no</p>\"");
        assert_eq!(first_line(b"\x9fI\x06\x00binary"), "");
        assert_eq!(first_line(b"  \r\n"), "");
    }
}
