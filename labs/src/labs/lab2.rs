//! Lab 2 — forwarding: requests reach the origin and responses the client, byte for byte,
//! with the header changes a proxy must make and the errors it must answer itself.
//!
//! Every check but `get-small` first proves that one GET works ([`single_get_works`]): a
//! program whose GET is broken loses `get-small`'s points, and the other checks say "not
//! judged" instead of blaming their own features.

use super::{expect_body, expect_status, get_seeded, no_response, single_get_works, SEED};
use crate::harness::Env;
use crate::{Check, CheckFuture, Fail, Lab};

pub fn lab() -> Lab {
    Lab {
        number: 2,
        title: "Forwarding",
        reference_flags: &[],
        rules: "",
        chat: false,
        checks: vec![
            Check::new("get-small", "a GET's 100-byte body arrives byte-exact", "connect to the host and port of the absolute URL, send the request, and relay every byte of the response", get_small),
            Check::new("get-large-binary", "a 1 MiB binary body arrives byte-exact", "loop on recv() until the whole body arrived: one read is never the whole response, and the bytes are binary (no string handling)", get_large),
            Check::new("head", "HEAD reaches the origin as HEAD, and its answer has the headers and no body", "forward the method as it came; a response to HEAD has Content-Length but no body: do not wait for one", head),
            Check::new("post-body", "a 64 KiB POST body reaches the origin byte-exact (echoed back)", "read the request body by its Content-Length and forward all of it", post_body),
            Check::new("put-chunked", "a chunked PUT body reaches the origin (echoed back)", "Transfer-Encoding: chunked bodies end with a zero-size chunk; forward them as they come", put_chunked),
            Check::new("chunked-response", "a chunked response arrives whole", "relay chunked responses until the last chunk (0\\r\\n\\r\\n)", chunked_response),
            Check::new("close-delimited", "a response without a length arrives whole (it ends when the origin closes)", "with neither Content-Length nor chunked, the body ends at the origin's close: read until EOF", close_delimited),
            Check::new("status-codes", "201, 404 and 500 from the origin reach the client unchanged", "pass the origin's status line through; do not map errors to 404 or 200", status_codes),
            Check::new("origin-form", "the origin receives the request-target in origin-form (GET /path), not the absolute URL", "RFC 9112 §3.2.1: a proxy sends GET /path?query HTTP/1.x to the origin, with the host in Host", origin_form),
            Check::new("headers-kept", "end-to-end request headers reach the origin, names and values unchanged", "forward every header except the hop-by-hop ones", headers_kept),
            Check::new("hop-by-hop", "the client's Connection, Proxy-Connection and Keep-Alive, and the headers Connection names, are not forwarded (a proxy's own Connection: close is fine)", "RFC 9110 §7.6.1: remove Connection and every header it lists, plus Proxy-Connection, Keep-Alive, TE, Upgrade", hop_by_hop),
            Check::new("via", "the request reaches the origin with a Via header", "RFC 9110 §7.6.3: a proxy adds Via: 1.1 NAME to what it forwards", via),
            Check::new("keep-alive", "two requests on one client connection each reach the origin once and each get their own response", "after a response, keep reading the client connection for its next request", keep_alive),
            Check::new("unreachable-502", "an origin that refuses the connection gets 502 Bad Gateway", "when connect() to the origin fails, answer 502 rather than closing or 404", unreachable),
            Check::new("malformed-400", "a malformed request line gets 400 Bad Request (while a good request still works)", "answer requests you cannot parse with 400, then close", malformed),
        ],
    }
}

fn get_small(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move { get_seeded(env, "/bytes/100", 100).await.map(|_| ()) })
}

fn get_large(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        get_seeded(env, "/bytes/1048576", 1 << 20).await.map(|_| ())
    })
}

fn head(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let path = "/text/1000?lab=head";
        let url = env.url(path);
        let reproduce = env.curl("-I ", &url);
        let res = env
            .request("HEAD", &url, &[], b"")
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let methods: Vec<String> = env.seen(path).into_iter().map(|s| s.method).collect();
        if methods.iter().any(|m| m != "HEAD") {
            return Err(Fail::new(
                format!("the origin received {methods:?} for a HEAD request"),
                reproduce,
            )
            .hint("forward the request's method as it came (HEAD stays HEAD)"));
        }
        expect_status(&res, 200, &reproduce)?;
        if res.header("content-length").as_deref() != Some("1000") {
            return Err(Fail::new(
                format!(
                    "Content-Length was {:?}, the origin sent 1000",
                    res.header("content-length")
                ),
                reproduce,
            ));
        }
        if res.extra > 0 {
            return Err(Fail::new(
                format!(
                    "{} bytes followed the response to HEAD, which has no body",
                    res.extra
                ),
                reproduce,
            ));
        }
        Ok(())
    })
}

/// A request body of `n` bytes of text in lines: the body checks are about framing (a
/// Content-Length, chunks); binary safety is get-small's and get-large-binary's.
fn text(n: usize) -> Vec<u8> {
    origin_sim::seeded_text(SEED ^ 0x5EED, n as u64)
}

fn post_body(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let url = env.url("/echo");
        let reproduce = env.curl("--data-binary @somefile ", &url);
        let body = text(64 * 1024);
        let res = env
            .request("POST", &url, &[("Content-Type", "text/plain")], &body)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        expect_body(&res.body, &body, &reproduce)
    })
}

fn put_chunked(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let url = env.url("/echo");
        let reproduce = env.curl("-T somefile -H 'Transfer-Encoding: chunked' ", &url);
        let body = text(10_000);
        let mut conn = env
            .connect()
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let mut req = format!(
            "PUT {url} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            env.origin.addr()
        )
        .into_bytes();
        for chunk in body.chunks(3000) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        conn.send(&req)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let res = conn
            .read("PUT")
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        expect_body(&res.body, &body, &reproduce)
    })
}

fn chunked_response(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        get_seeded(env, "/text/chunked/50000", 50_000)
            .await
            .map(|_| ())
    })
}

fn close_delimited(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        get_seeded(env, "/text/close/50000", 50_000)
            .await
            .map(|_| ())
    })
}

fn status_codes(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        for code in [201u16, 404, 500] {
            let url = env.url(&format!("/status/{code}"));
            let reproduce = env.curl("", &url);
            let res = env
                .get(&url)
                .await
                .map_err(|e| no_response(e, &reproduce))?;
            expect_status(&res, code, &reproduce)?;
        }
        Ok(())
    })
}

fn origin_form(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let path = "/text/10?lab=origin-form";
        let reproduce = format!(
            "{}   (the origin's /headers route shows the target it received)",
            env.curl("", &env.url("/headers"))
        );
        get_seeded(env, path, 10).await?;
        match env.seen(path).first() {
            Some(s) if s.absolute => Err(Fail::new(
                format!(
                    "the origin received `{} {} {}`: the absolute URL instead of {path}",
                    s.method, s.target, s.version
                ),
                reproduce,
            )),
            Some(_) => Ok(()),
            None => Err(match super::dropped_query(env, path) {
                Some(dropped) => Fail::new(dropped, reproduce),
                None => Fail::new("the request never reached the origin", reproduce),
            }),
        }
    })
}

/// The headers the origin received, in order, from `/headers`.
async fn seen_headers(
    env: &Env,
    extra: &[(&str, &str)],
    reproduce: &str,
) -> Result<Vec<(String, String)>, Fail> {
    let url = env.url("/headers");
    let res = env
        .request("GET", &url, extra, b"")
        .await
        .map_err(|e| no_response(e, reproduce))?;
    expect_status(&res, 200, reproduce)?;
    let json: serde_json::Value = serde_json::from_slice(&res.body).map_err(|e| {
        Fail::new(
            format!("the origin's JSON did not arrive intact: {e}"),
            reproduce,
        )
    })?;
    Ok(json["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or("").to_string(),
                        h[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Whether `seen` holds header `name` with exactly `value`.
fn has(seen: &[(String, String)], name: &str, value: &str) -> bool {
    seen.iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
}

fn headers_kept(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let reproduce = env.curl(
            "-H 'X-Lab-Token: abc123' -H 'Accept-Language: fr' ",
            &env.url("/headers"),
        );
        let sent = [("X-Lab-Token", "abc123"), ("Accept-Language", "fr")];
        let seen = seen_headers(env, &sent, &reproduce).await?;
        for (name, value) in sent {
            if !has(&seen, name, value) {
                return Err(Fail::new(
                    format!("the origin did not receive {name}: {value} (it saw {seen:?})"),
                    reproduce,
                ));
            }
        }
        Ok(())
    })
}

fn hop_by_hop(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let reproduce = env.curl(
            "-H 'Connection: X-Drop-Me' -H 'X-Drop-Me: 1' -H 'Proxy-Connection: keep-alive' -H 'Keep-Alive: timeout=5' -H 'X-Lab-Keep: yes' ",
            &env.url("/headers"),
        );
        let sent = [
            ("Connection", "X-Drop-Me"),
            ("X-Drop-Me", "1"),
            ("Proxy-Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("X-Lab-Keep", "yes"),
        ];
        let seen = seen_headers(env, &sent, &reproduce).await?;
        // The positive half: an end-to-end header in the same request arrives. A proxy that
        // forwards no client headers at all cannot pass by that.
        if !has(&seen, "X-Lab-Keep", "yes") {
            return Err(Fail::not_judged(
                Fail::new(
                    format!("the end-to-end header X-Lab-Keep: yes sent with them did not arrive either (the origin saw {seen:?})"),
                    reproduce,
                ),
                "client headers are not forwarded at all",
                "lab 2 headers-kept",
            ));
        }
        // The client's hop-by-hop headers and values. A proxy may send its own
        // `Connection: close` / `Proxy-Connection: close` (as CS:APP's handout asks): those
        // are not the client's.
        let leaked: Vec<&(String, String)> = seen
            .iter()
            .filter(|(n, v)| {
                let n = n.to_ascii_lowercase();
                let v = v.to_ascii_lowercase();
                n == "x-drop-me"
                    || (n == "keep-alive" && v.contains("timeout=5"))
                    || (n == "proxy-connection" && v.contains("keep-alive"))
                    || (n == "connection" && v.contains("x-drop-me"))
            })
            .collect();
        if leaked.is_empty() {
            Ok(())
        } else {
            Err(Fail::new(
                format!("the client's hop-by-hop headers reached the origin: {leaked:?}"),
                reproduce,
            ))
        }
    })
}

fn via(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let reproduce = env.curl("", &env.url("/headers"));
        let seen = seen_headers(env, &[], &reproduce).await?;
        let via = seen.iter().find(|(n, _)| n.eq_ignore_ascii_case("via"));
        match via {
            Some((_, v))
                if v.starts_with("1.1 ") || v.starts_with("1.0 ") || v.starts_with("HTTP/1.") =>
            {
                Ok(())
            }
            Some((_, v)) => Err(Fail::new(
                format!(
                    "Via should start with the protocol version, as \"1.1 name\"; it was {v:?}"
                ),
                reproduce,
            )),
            None => Err(Fail::new("the origin received no Via header", reproduce)),
        }
    })
}

fn keep_alive(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let paths = ["/text/10?lab=keep-alive-1", "/text/20?lab=keep-alive-2"];
        let urls = paths.map(|p| env.url(p));
        let reproduce = format!(
            "curl -sv -x http://{} {} {}   (curl reuses the connection: look for \"Re-using existing connection\")",
            env.subject,
            crate::harness::sh(&urls[0]),
            crate::harness::sh(&urls[1])
        );
        let mut conn = env
            .connect()
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let mut first_close = false;
        for (n, (url, len)) in urls.iter().zip([10u64, 20]).enumerate() {
            conn.send_request("GET", url, &[], b"")
                .await
                .map_err(|e| no_response(e, &reproduce))?;
            let res = conn.read("GET").await.map_err(|e| {
                let f = Fail::new(
                    format!("request {} on the same connection: {e}", n + 1),
                    &reproduce,
                );
                if n == 1 && first_close {
                    f.hint("the first response said Connection: close (or was HTTP/1.0 without keep-alive) and the connection ended: keep client connections open and read the next request")
                } else {
                    f
                }
            })?;
            expect_status(&res, 200, &reproduce)?;
            if res.body != origin_sim::seeded_for(SEED, paths[n], len) {
                return Err(Fail::new(
                    format!(
                        "request {} on the connection got {} body bytes, not the {len} its URL asks for{}",
                        n + 1,
                        res.body.len(),
                        if n == 1 && res.body.len() == 10 { ": the response to request 1 again" } else { "" }
                    ),
                    &reproduce,
                )
                .hint("each request gets the response to it, once: read the next request from the client, forward it, relay its own response"));
            }
            first_close = !res.head.keeps_alive();
        }
        for path in paths {
            if let Some(dropped) = super::dropped_query(env, path) {
                return Err(Fail::not_judged(
                    Fail::new(dropped, &reproduce),
                    "the query string does not reach the origin",
                    "lab 2 origin-form",
                ));
            }
            let hits = env.hits(path);
            if hits != 1 {
                return Err(Fail::new(
                    format!("the origin received {path} {hits} times; the client sent it once"),
                    &reproduce,
                )
                .hint("forward each request once"));
            }
        }
        Ok(())
    })
}

fn unreachable(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let url = "http://127.0.0.1:1/";
        let reproduce = env.curl("", url);
        let res = env
            .get(url)
            .await
            .map_err(|e| Fail::new(format!("no 502 came back: {e}"), &reproduce))?;
        expect_status(&res, 502, &reproduce)
    })
}

fn malformed(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        // The positive half: a good request works, so a program that answers 400 to
        // everything cannot pass.
        single_get_works(env).await?;
        let reproduce = env.raw("THIS IS NOT HTTP\\r\\n\\r\\n");
        let mut conn = env
            .connect()
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        let res = conn.read("GET").await.map_err(|e| {
            // A 400 whose end never comes is a 400 without a length, not no 400.
            match e.strip_prefix("the response (400 ") {
                Some(_) => Fail::new(
                    format!("a 400 came back, but the client cannot tell where it ends: {e}"),
                    &reproduce,
                )
                .hint("give every response you write a length (`Content-Length: 0` for an empty body), or close the connection after it"),
                None => Fail::new(format!("no 400 came back: {e}"), &reproduce),
            }
        })?;
        expect_status(&res, 400, &reproduce)
    })
}
