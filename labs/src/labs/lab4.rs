//! Lab 4 — caching: what the proxy may store, for how long, and what it must ask the origin
//! again. Proven by `X-Origin-Hits` — origin-sim's count for a path, stamped on each response
//! it makes, so a response served again from a cache carries the stamp of the stored one —
//! and by origin-sim's count of 304 answers, never by timing.
//!
//! The handout's limits, which the reference runs with: at most 1 MiB cached in all, and no
//! object over 100 KiB (as CMU's Proxy Lab).

use super::{
    caching_works, expect_body, expect_cached, expect_refetched, expect_status, fetch, no_response,
    single_get_works, Fetched, SEED,
};
use crate::harness::Env;
use crate::{Check, CheckFuture, Fail, Lab};
use std::time::Duration;

pub fn lab() -> Lab {
    Lab {
        number: 4,
        title: "Caching",
        reference_flags: &["--cache-size", "1MiB", "--cache-max-object", "100KiB"],
        rules: "",
        chat: false,
        checks: vec![
            Check::new("hit", "a fresh response is served again without asking the origin", "key the cache by the absolute URL (not the raw request bytes) and store responses whose Cache-Control allows it", hit),
            Check::new("no-store-private", "responses marked no-store or private are never served from the cache (while cacheable ones are)", "a shared cache must not store Cache-Control: no-store or private responses (RFC 9111 §3, §5.2.2)", no_store_private),
            Check::new("max-age-expiry", "a response is served from the cache while fresh and fetched again once max-age has passed", "remember when each response was stored and compare its age with max-age", expiry),
            Check::new("etag-revalidation", "a stale response with an ETag is revalidated with If-None-Match, and the origin's 304 is turned into the full response", "send If-None-Match with the stored ETag; on 304 serve the stored body (RFC 9111 §4.3)", etag),
            Check::new("vary", "Vary keeps one stored response per value of the header it names", "add the values of the headers Vary names to the cache key (RFC 9111 §4.1)", vary),
            Check::new("post-invalidation", "a POST to a URL makes its stored response stale", "a successful unsafe method invalidates the stored responses for its URL (RFC 9111 §4.4)", invalidation),
            Check::new("size-limit", "a 50 KiB object is cached and a 200 KiB one (over the 100 KiB limit) is not", "count bytes as the body streams past; stop collecting (but keep relaying) once it is over the object limit", size_limit),
            Check::new("eviction", "with 1.2 MB of objects through a 1 MiB cache, the least recently used are evicted: an early object used again is kept, the newest too", "track the total bytes stored and evict least-recently-used entries when it passes the limit (a hit makes an entry recently used)", eviction),
            Check::new("origin-stopped", "a fresh stored response is served even after the origin went away", "a hit must not contact the origin at all, not even to connect", origin_stopped),
        ],
    }
}

fn hit(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        let path = "/cache/60?lab=hit";
        let first = fetch(env, path, &[]).await?;
        let second = fetch(env, path, &[]).await?;
        expect_body(
            &second.res.body,
            &first.res.body,
            &env.curl("", &env.url(path)),
        )?;
        expect_cached(
            env,
            path,
            &first,
            &second,
            "the second request should have been a cache hit",
        )
    })
}

fn no_store_private(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        // The positive half: a cacheable response is served from the cache, so a proxy
        // that caches nothing cannot pass.
        caching_works(env).await?;
        for path in ["/nostore", "/private"] {
            let first = fetch(env, path, &[]).await?;
            let second = fetch(env, path, &[]).await?;
            expect_refetched(
                env,
                path,
                &first,
                &second,
                "this response must not be stored",
            )?;
        }
        Ok(())
    })
}

fn expiry(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        // max-age=3: Date has whole seconds and a relay takes time, so a response can look
        // up to a second and a half old when it arrives; 3 s leave room for that.
        let path = "/cache/3?lab=expiry";
        let first = fetch(env, path, &[]).await?;
        let second = fetch(env, path, &[]).await?;
        expect_cached(
            env,
            path,
            &first,
            &second,
            "within max-age=3 the second request should be a hit",
        )?;
        // Once max-age has passed, a request must go to the origin again. Ask until it does
        // (a proxy that caches forever never will).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let later = fetch(env, path, &[]).await?;
            if super::reached_origin(&first, &later) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Fail::new(
                    "8 seconds after a max-age=3 response was stored it was still served from the cache",
                    env.curl("-D - ", &env.url(path)),
                ));
            }
        }
    })
}

fn etag(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        single_get_works(env).await?;
        // max-age=0: stale at once, but it has an ETag, so it can be revalidated.
        let path = "/etag/lab4?max-age=0";
        let first = fetch(env, path, &[]).await?;
        let second = fetch(env, path, &[]).await?;
        let reproduce = env.curl("-D - ", &env.url(path));
        expect_body(&second.res.body, &first.res.body, &reproduce)?;
        if env.origin.origin().not_modified() == 0 {
            return Err(Fail::new(
                "the origin answered no conditional request with 304; the second request should have been revalidated with If-None-Match",
                reproduce,
            ));
        }
        Ok(())
    })
}

fn vary(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        let path = "/vary/X-Lab-Lang";
        let fr = fetch(env, path, &[("X-Lab-Lang", "fr")]).await?;
        // The origin's answer names the value it received: without the header there is
        // nothing for Vary to tell apart (lab 2's headers-kept grades forwarding it).
        if !fr.res.text().contains("X-Lab-Lang: fr") {
            return Err(Fail::not_judged(
                Fail::new(
                    format!(
                        "the origin did not receive X-Lab-Lang: fr (it answered {:?})",
                        fr.res.text().trim()
                    ),
                    env.curl("-H 'X-Lab-Lang: fr' ", &env.url(path)),
                ),
                "request headers do not reach the origin",
                "lab 2 headers-kept",
            ));
        }
        let de = fetch(env, path, &[("X-Lab-Lang", "de")]).await?;
        if de.res.body == fr.res.body {
            return Err(Fail::new(
                "a request with X-Lab-Lang: de got the response stored for X-Lab-Lang: fr",
                env.curl("-H 'X-Lab-Lang: de' ", &env.url(path)),
            ));
        }
        expect_refetched(
            env,
            path,
            &fr,
            &de,
            "a different X-Lab-Lang must go to the origin",
        )?;
        let again = fetch(env, path, &[("X-Lab-Lang", "fr")]).await?;
        expect_body(
            &again.res.body,
            &fr.res.body,
            &env.curl("-H 'X-Lab-Lang: fr' ", &env.url(path)),
        )?;
        expect_cached(
            env,
            path,
            &fr,
            &again,
            "X-Lab-Lang: fr again should be a hit",
        )
    })
}

fn invalidation(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        let path = "/cache/60?lab=invalidate";
        let first = fetch(env, path, &[]).await?;
        let second = fetch(env, path, &[]).await?;
        expect_cached(env, path, &first, &second, "the second GET should be a hit")?;
        let url = env.url(path);
        let reproduce = env.curl("-d x ", &url);
        let res = env
            .request("POST", &url, &[], b"x")
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&res, 200, &reproduce)?;
        let after = fetch(env, path, &[]).await?;
        expect_refetched(
            env,
            path,
            &first,
            &after,
            "after the POST, the GET must go to the origin again",
        )
    })
}

fn size_limit(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        let small = "/cache/60?text=51200";
        let large = "/cache/60?text=204800";
        let mut fetched = Vec::new();
        for (path, len) in [(small, 51_200u64), (large, 204_800)] {
            for _ in 0..2 {
                let f = fetch(env, path, &[]).await?;
                expect_body(
                    &f.res.body,
                    &origin_sim::seeded_for(SEED, path, len),
                    &env.curl("", &env.url(path)),
                )?;
                fetched.push(f);
            }
        }
        expect_cached(
            env,
            small,
            &fetched[0],
            &fetched[1],
            "a 50 KiB object is under the limit and should be cached",
        )?;
        expect_refetched(
            env,
            large,
            &fetched[2],
            &fetched[3],
            "a 200 KiB object is over the 100 KiB limit and must not be cached",
        )
    })
}

fn eviction(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        // Objects of 100,000 bytes through a 1 MiB cache: ten fit. Ten are stored, the first
        // is used again, then two more arrive. Least-recently-used evicts the second and the
        // third; first-in-first-out (or emptying the whole cache) evicts the first.
        let path = |i: usize| format!("/cache/60?text=100000&n={i}");
        let mut stored: Vec<Fetched> = Vec::new();
        for i in 0..10 {
            stored.push(fetch(env, &path(i), &[]).await?);
        }
        let again = fetch(env, &path(0), &[]).await?;
        expect_cached(
            env,
            &path(0),
            &stored[0],
            &again,
            "ten objects of 100,000 bytes fit in 1 MiB: the first should still be cached",
        )?;
        for i in 10..12 {
            stored.push(fetch(env, &path(i), &[]).await?);
        }
        // Kept: the object used again, and the newest.
        let again = fetch(env, &path(0), &[]).await?;
        expect_cached(env, &path(0), &stored[0], &again, "the first object was used again before the cache filled, so it was not the least recently used and should still be cached (evicting the oldest stored is FIFO, not LRU)")?;
        let again = fetch(env, &path(11), &[]).await?;
        expect_cached(
            env,
            &path(11),
            &stored[11],
            &again,
            "the most recently stored object should still be cached",
        )?;
        // Evicted: the least recently used.
        let again = fetch(env, &path(1), &[]).await?;
        expect_refetched(
            env,
            &path(1),
            &stored[1],
            &again,
            "the least recently used object should have been evicted to make room",
        )
    })
}

fn origin_stopped(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        caching_works(env).await?;
        // An origin of its own, so it can be stopped.
        let origin = origin_sim::start(origin_sim::Config::default())
            .await
            .map_err(|e| Fail::new(format!("a second origin-sim did not start: {e}"), ""))?;
        let url = format!("{}/cache/60?lab=stopped", origin.url());
        let reproduce = format!(
            "{}   (then stop the origin and run it again)",
            env.curl("", &url)
        );
        let first = env
            .get(&url)
            .await
            .map_err(|e| no_response(e, &reproduce))?;
        expect_status(&first, 200, &reproduce)?;
        origin.shutdown().await;
        let second = env
            .get(&url)
            .await
            .map_err(|e| Fail::new(format!("with the origin stopped: {e}"), &reproduce))?;
        expect_status(&second, 200, &reproduce)?;
        expect_body(&second.body, &first.body, &reproduce)?;
        Ok(())
    })
}
