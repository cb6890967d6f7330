//! The shared cache (RFC 9111), one rule per test, proven by what reached the origin
//! (`X-Origin-Hits`): a hit never does.

use crate::support::{Bench, Response};

async fn send(bench: &Bench, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut client = bench.connect().await;
    let mut request = format!("{method} {} HTTP/1.1\r\nHost: x\r\n", bench.url(path));
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    client.send(request).await;
    client.read(method).await
}

async fn get(bench: &Bench, path: &str) -> Response {
    send(bench, "GET", path, &[]).await
}

fn cache_status(res: &Response) -> String {
    res.header("cache-status").unwrap_or_default()
}

#[tokio::test]
async fn a_fresh_response_is_served_without_the_origin() {
    let bench = Bench::start().await;
    let first = get(&bench, "/cache/60").await;
    assert_eq!(cache_status(&first), "proxylab; fwd=uri-miss; stored");
    let second = get(&bench, "/cache/60").await;
    assert_eq!(second.head.status, 200);
    assert_eq!(second.body, first.body);
    assert_eq!(cache_status(&second), "proxylab; hit");
    assert!(second.header("age").is_some(), "a hit carries Age");
    assert_eq!(bench.hits("/cache/60"), 1);
    bench.stop().await;
}

#[tokio::test]
async fn no_store_and_private_are_never_stored() {
    let bench = Bench::start().await;
    for path in ["/nostore", "/private"] {
        get(&bench, path).await;
        let again = get(&bench, path).await;
        assert_eq!(bench.hits(path), 2, "{path}");
        assert_eq!(cache_status(&again), "proxylab; fwd=uri-miss");
    }
    // The request's own no-store too.
    send(&bench, "GET", "/cache/30", &[("Cache-Control", "no-store")]).await;
    get(&bench, "/cache/30").await;
    assert_eq!(bench.hits("/cache/30"), 2);
    bench.stop().await;
}

/// A stale entry with an ETag is revalidated; the origin's 304 refreshes it and the
/// client gets the whole stored response.
#[tokio::test]
async fn stale_entries_are_revalidated_with_etag_and_last_modified() {
    let bench = Bench::start().await;
    for path in ["/etag/v1", "/lastmod/1700000000"] {
        let first = get(&bench, path).await;
        let second = get(&bench, path).await;
        assert_eq!(second.head.status, 200, "{path}");
        assert_eq!(second.body, first.body);
        assert_eq!(cache_status(&second), "proxylab; fwd=stale; fwd-status=304");
        assert_eq!(
            bench.hits(path),
            2,
            "{path}: the revalidation reached the origin"
        );
    }
    bench.stop().await;
}

/// A client's own conditional request is answered 304 from a fresh entry.
#[tokio::test]
async fn client_conditionals_get_304_from_the_cache() {
    let bench = Bench::start().await;
    get(&bench, "/cache/60").await;
    let res = send(
        &bench,
        "GET",
        "/cache/60",
        &[("If-None-Match", "\"cache-60\"")],
    )
    .await;
    assert_eq!(res.head.status, 304);
    assert!(res.body.is_empty());
    let res = send(
        &bench,
        "GET",
        "/cache/60",
        &[("If-Modified-Since", "Fri, 02 Jan 2026 00:00:00 GMT")],
    )
    .await;
    assert_eq!(res.head.status, 304);
    let res = send(
        &bench,
        "GET",
        "/cache/60",
        &[("If-None-Match", "\"other\"")],
    )
    .await;
    assert_eq!(res.head.status, 200);
    assert_eq!(bench.hits("/cache/60"), 1);
    bench.stop().await;
}

#[tokio::test]
async fn vary_keeps_one_variant_per_nominated_header_value() {
    let bench = Bench::start().await;
    let path = "/vary/Accept-Language";
    let en = send(&bench, "GET", path, &[("Accept-Language", "en")]).await;
    let fr = send(&bench, "GET", path, &[("Accept-Language", "fr")]).await;
    let en_again = send(&bench, "GET", path, &[("Accept-Language", "en")]).await;
    assert_eq!(en.text(), "Accept-Language: en\n");
    assert_eq!(fr.text(), "Accept-Language: fr\n");
    assert_eq!(en_again.text(), "Accept-Language: en\n");
    assert_eq!(cache_status(&en), "proxylab; fwd=uri-miss; stored");
    // RFC 9211: the URI was stored, but no variant matched.
    assert_eq!(cache_status(&fr), "proxylab; fwd=vary-miss; stored");
    assert_eq!(cache_status(&en_again), "proxylab; hit");
    assert_eq!(bench.hits(path), 2);
    bench.stop().await;
}

/// Equivalent `Accept-Language` values (order, case, spacing, q=1 spelled out) select the
/// same stored variant.
#[tokio::test]
async fn equivalent_accept_language_values_share_a_variant() {
    let bench = Bench::start().await;
    let path = "/vary/Accept-Language";
    let first = send(
        &bench,
        "GET",
        path,
        &[("Accept-Language", "en-US, fr;q=0.5")],
    )
    .await;
    assert_eq!(cache_status(&first), "proxylab; fwd=uri-miss; stored");
    for same in ["fr;q=0.5,en-us", "EN-us;q=1, FR; Q=0.50"] {
        let res = send(&bench, "GET", path, &[("Accept-Language", same)]).await;
        assert_eq!(cache_status(&res), "proxylab; hit", "{same}");
        assert_eq!(res.body, first.body);
    }
    assert_eq!(bench.hits(path), 1);
    bench.stop().await;
}

/// A client's `If-Modified-Since` is answered 304 from a fresh stored response that has no
/// `Last-Modified`: its `Date` stands in (RFC 9111 §4.3.2).
#[tokio::test]
async fn if_modified_since_without_last_modified_uses_the_date() {
    let bench = Bench::start().await;
    let path = "/etag/v1?max-age=60";
    let stored = get(&bench, path).await;
    assert!(stored.header("last-modified").is_none());
    let date = stored.header("date").unwrap();
    let res = send(&bench, "GET", path, &[("If-Modified-Since", &date)]).await;
    assert_eq!(res.head.status, 304, "{}", cache_status(&res));
    assert_eq!(cache_status(&res), "proxylab; hit");
    let before = "Thu, 01 Jan 2015 00:00:00 GMT";
    let res = send(&bench, "GET", path, &[("If-Modified-Since", before)]).await;
    assert_eq!(res.head.status, 200, "modified since 2015");
    assert_eq!(bench.hits(path), 1);
    bench.stop().await;
}

/// `private="Set-Cookie"` (RFC 9111 §5.2.2.7) lets a shared cache store the response
/// without that field: the first client gets its cookie, later ones get the stored
/// response and no cookie.
#[tokio::test]
async fn qualified_private_is_stored_without_the_named_field() {
    let bench = Bench::start().await;
    let path = "/response-headers?Cache-Control=max-age%3D60%2C%20private%3D%22Set-Cookie%22\
                &Set-Cookie=id%3D1&X-Kept=yes";
    let first = get(&bench, path).await;
    assert_eq!(first.header("set-cookie").as_deref(), Some("id=1"));
    assert_eq!(cache_status(&first), "proxylab; fwd=uri-miss; stored");
    let hit = get(&bench, path).await;
    assert_eq!(cache_status(&hit), "proxylab; hit");
    assert_eq!(hit.header("set-cookie"), None, "the cookie was reused");
    assert_eq!(hit.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(bench.hits(path), 1);
    bench.stop().await;
}

/// RFC 9213: a valid targeted field rules over Cache-Control for this cache — the
/// proxy's own (`--targeted-cache-control`) over `CDN-Cache-Control` —, an invalid one is
/// ignored as a whole; in forward mode the fields are passed on to the client.
#[tokio::test]
async fn targeted_cache_control_rules_over_cache_control() {
    let bench = Bench::with(|c| {
        c.targeted_cache_control = vec!["Proxylab-Cache-Control".into()];
    })
    .await;
    // (response fields as a query, how many times two GETs reach the origin)
    let cases = [
        ("Cache-Control=no-store&CDN-Cache-Control=max-age%3D60", 1),
        ("Cache-Control=max-age%3D60&CDN-Cache-Control=no-store", 2),
        (
            "Cache-Control=no-store&CDN-Cache-Control=max-age%3D1.5.0",
            2,
        ),
        (
            "Cache-Control=max-age%3D60&Proxylab-Cache-Control=private\
             &CDN-Cache-Control=max-age%3D60",
            2,
        ),
        (
            "Cache-Control=no-store&Proxylab-Cache-Control=max-age%3D60%3B\
             &CDN-Cache-Control=max-age%3D60",
            1,
        ),
    ];
    for (query, fetches) in cases {
        let path = format!("/response-headers?{query}");
        let first = get(&bench, &path).await;
        assert_eq!(first.head.status, 200, "{query}");
        assert!(first.header("cdn-cache-control").is_some(), "{query}");
        get(&bench, &path).await;
        assert_eq!(bench.hits(&path), fetches, "{query}");
    }
    bench.stop().await;
}

/// A POST response with explicit freshness and a `Content-Location` naming the POST's own
/// target is what a GET of that target would get: a later GET is a hit.
#[tokio::test]
async fn a_post_response_for_its_own_uri_serves_a_later_get() {
    let bench = Bench::start().await;
    let path = "/response-headers?Content-Location=SELF&Cache-Control=max-age%3D60";
    let post = send(&bench, "POST", path, &[("Content-Length", "0")]).await;
    assert_eq!(post.head.status, 200);
    assert_eq!(post.header("content-location").as_deref(), Some(path));
    let get_after = get(&bench, path).await;
    assert_eq!(cache_status(&get_after), "proxylab; hit");
    assert_eq!(get_after.body, post.body);
    assert_eq!(bench.hits(path), 1);
    // Another Content-Location (or none) is not stored for GET.
    let other = "/response-headers?Content-Location=/elsewhere&Cache-Control=max-age%3D60";
    send(&bench, "POST", other, &[("Content-Length", "0")]).await;
    assert_eq!(
        cache_status(&get(&bench, other).await),
        "proxylab; fwd=uri-miss; stored"
    );
    bench.stop().await;
}

/// RFC 9110 §14: a Range request is answered 206 from a fresh stored whole response, each
/// form of byte range checked against the bytes the origin sent; a range past the end is
/// 416; several ranges, another unit or an If-Range that does not hold get the whole 200.
#[tokio::test]
async fn ranges_are_served_from_a_stored_response() {
    let bench = Bench::start().await;
    let path = "/cache/60?bytes=100";
    let whole = get(&bench, path).await;
    assert_eq!(whole.body.len(), 100);
    let etag = whole.header("etag").unwrap();
    for (range, first, last) in [
        ("bytes=10-19", 10, 19),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=95-500", 95, 99),
        ("BYTES=0-0", 0, 0),
        ("bytes= 3-4 ", 3, 4),
    ] {
        let res = send(&bench, "GET", path, &[("Range", range)]).await;
        assert_eq!(res.head.status, 206, "{range}");
        assert_eq!(res.body, whole.body[first..=last], "{range}");
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes {first}-{last}/100")),
            "{range}"
        );
        assert_eq!(cache_status(&res), "proxylab; hit", "{range}");
    }
    for unsatisfiable in ["bytes=100-", "bytes=200-300", "bytes=-0"] {
        let res = send(&bench, "GET", path, &[("Range", unsatisfiable)]).await;
        assert_eq!(res.head.status, 416, "{unsatisfiable}");
        assert_eq!(res.header("content-range").as_deref(), Some("bytes */100"));
        assert!(res.body.is_empty());
    }
    for whole_again in [
        &[("Range", "bytes=0-1,5-6")][..],
        &[("Range", "items=0-1")],
        &[("Range", "bytes=5-1")],
        &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
        &[
            ("Range", "bytes=0-9"),
            ("If-Range", "Thu, 01 Jan 2015 00:00:00 GMT"),
        ],
    ] {
        let res = send(&bench, "GET", path, whole_again).await;
        assert_eq!(res.head.status, 200, "{whole_again:?}");
        assert_eq!(res.body, whole.body, "{whole_again:?}");
    }
    let res = send(
        &bench,
        "GET",
        path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    )
    .await;
    assert_eq!(res.head.status, 206, "If-Range with the stored ETag");
    assert_eq!(bench.hits(path), 1, "every answer came from the cache");
    bench.stop().await;
}

/// A Range request that misses goes to the origin as it is; its answer is not stored and
/// does not mark the URI uncacheable: the next whole GET is stored.
#[tokio::test]
async fn a_range_miss_leaves_the_uri_cacheable() {
    let bench = Bench::start().await;
    let path = "/cache/60?bytes=50";
    let ranged = send(&bench, "GET", path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(ranged.head.status, 206);
    assert_eq!(cache_status(&ranged), "proxylab; fwd=uri-miss; stored");
    let whole = get(&bench, path).await;
    assert_eq!(cache_status(&whole), "proxylab; fwd=uri-miss; stored");
    assert_eq!(cache_status(&get(&bench, path).await), "proxylab; hit");
    assert_eq!(bench.hits(path), 2);
    bench.stop().await;
}

/// RFC 9111 §3.3–3.4: a 206 is kept for the range it covers and answers later requests
/// for ranges inside it; 206s of the same representation (strong ETag) are combined, and
/// once they cover it whole, a plain GET is a hit with every byte in its place.
#[tokio::test]
async fn partial_responses_are_kept_reused_and_combined() {
    let bench = Bench::start().await;
    let path = "/cache/60?bytes=100";
    // (Range, first, last, answered from the cache, origin requests so far)
    let steps = [
        ("bytes=0-49", 0, 49, false, 1),
        ("bytes=10-19", 10, 19, true, 1),
        ("bytes=70-79", 70, 79, false, 2),
        ("bytes=72-75", 72, 75, true, 2),
        ("bytes=45-74", 45, 74, false, 3),
        ("bytes=30-79", 30, 79, true, 3),
        ("bytes=-20", 80, 99, false, 4),
    ];
    let mut seen = vec![None; 100];
    for (asked, first, last, hit, fetches) in steps {
        let res = send(&bench, "GET", path, &[("Range", asked)]).await;
        assert_eq!(res.head.status, 206, "{asked}");
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes {first}-{last}/100")),
            "{asked}"
        );
        let expected = match hit {
            true => "proxylab; hit; detail=partial",
            false => "proxylab; fwd=uri-miss; stored",
        };
        assert_eq!(cache_status(&res), expected, "{asked}");
        assert_eq!(bench.hits(path), fetches, "{asked}");
        for (i, byte) in res.body.iter().enumerate() {
            let slot = &mut seen[first + i];
            assert!(
                slot.is_none_or(|b| b == *byte),
                "{asked}: byte {}",
                first + i
            );
            *slot = Some(*byte);
        }
    }
    // 0-49, 45-74, 70-79 and 80-99 made the whole representation: a plain GET is a hit.
    let whole = get(&bench, path).await;
    assert_eq!(whole.head.status, 200);
    assert_eq!(cache_status(&whole), "proxylab; hit");
    let seen: Vec<u8> = seen.into_iter().map(|b| b.unwrap()).collect();
    assert_eq!(whole.body, seen, "the pieces were put together in order");
    assert_eq!(bench.hits(path), 4);
    bench.stop().await;
}

/// Sends `GET url` through `proxy` on a new connection and reads the answer.
async fn through(proxy: &proxy::Handle, url: &str) -> Response {
    let mut client = crate::support::Client::connect(proxy.addr()).await;
    client
        .send(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await;
    client.read("GET").await
}

/// RFC 5861 §4 and RFC 9111 §4.2.4: when the origin is down, a stale stored response with
/// `stale-if-error` stands in; one with `must-revalidate` never does (504); one with
/// neither gets the failure (502), as before.
#[tokio::test]
async fn stale_if_error_stands_in_for_an_origin_that_is_down() {
    let bench = Bench::start().await;
    let cases = [
        ("max-age%3D0%2C%20stale-if-error%3D60", 200),
        (
            "max-age%3D0%2C%20stale-if-error%3D60%2C%20must-revalidate",
            504,
        ),
        (
            "max-age%3D0%2C%20stale-if-error%3D60%2C%20proxy-revalidate",
            504,
        ),
        ("max-age%3D0", 502),
    ];
    let urls: Vec<String> = cases
        .iter()
        .map(|(cc, _)| bench.url(&format!("/response-headers?Cache-Control={cc}")))
        .collect();
    let mut bodies = Vec::new();
    for url in &urls {
        let first = through(&bench.proxy, url).await;
        assert_eq!(
            cache_status(&first),
            "proxylab; fwd=uri-miss; stored",
            "{url}"
        );
        bodies.push(first.body);
    }
    let Bench { origin, proxy } = bench;
    origin.shutdown().await;
    for ((url, (_, expected)), body) in urls.iter().zip(cases).zip(bodies) {
        let res = through(&proxy, url).await;
        assert_eq!(res.head.status, expected, "{url}: {}", res.text());
        if expected == 200 {
            assert_eq!(res.body, body);
            assert_eq!(cache_status(&res), "proxylab; hit; detail=stale-if-error");
        }
    }
    proxy.shutdown().await.unwrap();
}

/// RFC 5861 §3: a response stale within its `stale-while-revalidate` window is served at
/// once — while the origin holds the revalidation — and refreshed behind the client's
/// back: once the revalidation is in, hits carry the origin's second answer. With
/// must-revalidate, the stale response is not served: the request waits for the origin.
#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    use crate::support::{eventually, eventually_async};
    let bench = Bench::start().await;
    let origin = bench.origin.origin();
    let path = "/gate/swr?cc=max-age=0,stale-while-revalidate=600";
    origin.open_gate("swr");
    let first = get(&bench, path).await;
    assert_eq!(cache_status(&first), "proxylab; fwd=uri-miss; stored");
    origin.close_gate("swr");
    // The origin now holds every response for this path, yet both clients get one.
    for _ in 0..2 {
        let stale = get(&bench, path).await;
        assert_eq!(
            cache_status(&stale),
            "proxylab; hit; detail=stale-while-revalidate"
        );
        assert_eq!(stale.header("x-origin-hits").as_deref(), Some("1"));
        assert_eq!(stale.body, first.body);
    }
    eventually("the revalidation at the origin", || bench.hits(path) >= 2).await;
    origin.open_gate("swr");
    eventually_async("the refreshed response in the cache", || async {
        let res = get(&bench, path).await;
        assert_eq!(res.head.status, 200);
        res.header("x-origin-hits").as_deref() == Some("2")
    })
    .await;

    let must = "/gate/swr?cc=max-age=0,stale-while-revalidate=600,must-revalidate";
    get(&bench, must).await;
    let again = get(&bench, must).await;
    assert_eq!(cache_status(&again), "proxylab; fwd=stale; stored");
    assert_eq!(bench.hits(must), 2);
    bench.stop().await;
}

/// A 5xx from the origin is also an error `stale-if-error` covers: the client gets the
/// stale stored response, not the 500.
#[tokio::test]
async fn stale_if_error_stands_in_for_a_5xx() {
    let origin = crate::support::Recorder::start(&[
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-if-error=60\r\n\
         Content-Length: 5\r\n\r\nstale",
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
    ])
    .await;
    let proxy = proxy::start(proxy::Config::for_tests()).await.unwrap();
    let url = origin.url("/flaky");
    assert_eq!(through(&proxy, &url).await.text(), "stale");
    let res = through(&proxy, &url).await;
    assert_eq!(res.head.status, 200);
    assert_eq!(res.text(), "stale");
    assert_eq!(cache_status(&res), "proxylab; hit; detail=stale-if-error");
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_target() {
    let bench = Bench::start().await;
    get(&bench, "/cache/60").await;
    let post = send(&bench, "POST", "/cache/60", &[("Content-Length", "0")]).await;
    assert_eq!(post.head.status, 200);
    let after = get(&bench, "/cache/60").await;
    assert_eq!(cache_status(&after), "proxylab; fwd=uri-miss; stored");
    assert_eq!(bench.hits("/cache/60"), 3);
    bench.stop().await;
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let bench = Bench::start().await;
    let full = get(&bench, "/cache/60").await;
    let head = send(&bench, "HEAD", "/cache/60", &[]).await;
    assert_eq!(head.head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string())
    );
    assert_eq!(bench.hits("/cache/60"), 1);
    bench.stop().await;
}

#[tokio::test]
async fn request_directives_are_honoured() {
    let bench = Bench::start().await;
    // only-if-cached with nothing stored: 504, and the origin is not asked.
    let res = send(
        &bench,
        "GET",
        "/cache/60",
        &[("Cache-Control", "only-if-cached")],
    )
    .await;
    assert_eq!(res.head.status, 504);
    assert_eq!(bench.hits("/cache/60"), 0);
    get(&bench, "/cache/60").await;
    let res = send(
        &bench,
        "GET",
        "/cache/60",
        &[("Cache-Control", "only-if-cached")],
    )
    .await;
    assert_eq!(res.head.status, 200);
    // no-cache (or Pragma: no-cache) makes the cache revalidate.
    send(&bench, "GET", "/cache/60", &[("Cache-Control", "no-cache")]).await;
    send(&bench, "GET", "/cache/60", &[("Pragma", "no-cache")]).await;
    assert_eq!(bench.hits("/cache/60"), 3);
    // max-age=0 too; min-fresh beyond the lifetime too.
    send(
        &bench,
        "GET",
        "/cache/60",
        &[("Cache-Control", "max-age=0")],
    )
    .await;
    send(
        &bench,
        "GET",
        "/cache/60",
        &[("Cache-Control", "min-fresh=3600")],
    )
    .await;
    assert_eq!(bench.hits("/cache/60"), 5);
    // max-stale accepts a stale entry without asking the origin.
    get(&bench, "/etag/s").await;
    let stale = send(&bench, "GET", "/etag/s", &[("Cache-Control", "max-stale")]).await;
    assert_eq!(cache_status(&stale), "proxylab; hit");
    assert_eq!(bench.hits("/etag/s"), 1);
    bench.stop().await;
}

#[tokio::test]
async fn expires_and_heuristic_freshness_make_hits() {
    let bench = Bench::start().await;
    for path in ["/expires/60", "/heuristic"] {
        get(&bench, path).await;
        let again = get(&bench, path).await;
        assert_eq!(cache_status(&again), "proxylab; hit", "{path}");
        assert_eq!(bench.hits(path), 1, "{path}");
    }
    // No validator and no freshness information: never stored.
    get(&bench, "/bytes/10").await;
    get(&bench, "/bytes/10").await;
    assert_eq!(bench.hits("/bytes/10"), 2);
    bench.stop().await;
}

/// A request with Authorization is stored only if the response allows it explicitly.
#[tokio::test]
async fn authorized_requests_are_not_shared() {
    let bench = Bench::start().await;
    let auth = [("Authorization", "Basic dXNlcjpwdw==")];
    send(&bench, "GET", "/cache/60", &auth).await;
    send(&bench, "GET", "/cache/60", &auth).await;
    assert_eq!(bench.hits("/cache/60"), 2);
    bench.stop().await;
}

#[tokio::test]
async fn cache_size_zero_and_object_limit() {
    let off = Bench::with(|c| c.cache_size = 0).await;
    get(&off, "/cache/60").await;
    let res = get(&off, "/cache/60").await;
    assert_eq!(off.hits("/cache/60"), 2);
    assert!(
        res.header("cache-status").is_none(),
        "no Cache-Status without a cache"
    );
    off.stop().await;

    let small = Bench::with(|c| c.cache_max_object = 10).await;
    get(&small, "/cache/60").await; // "fresh for 60 s\n" is 15 bytes
    get(&small, "/cache/60").await;
    assert_eq!(small.hits("/cache/60"), 2);
    small.stop().await;
}

/// The Cache-Status a client sees over a sequence of requests, as a reviewed snapshot.
#[tokio::test]
async fn cache_status_sequence() {
    let bench = Bench::start().await;
    let mut seen = Vec::new();
    for (method, path, headers) in [
        ("GET", "/cache/60", vec![]),
        ("GET", "/cache/60", vec![]),
        ("HEAD", "/cache/60", vec![]),
        ("GET", "/cache/60", vec![("Cache-Control", "no-cache")]),
        ("GET", "/etag/t", vec![]),
        ("GET", "/etag/t", vec![]),
        ("GET", "/nostore", vec![]),
        ("POST", "/cache/60", vec![("Content-Length", "0")]),
        ("GET", "/cache/60", vec![]),
    ] {
        let res = send(&bench, method, path, &headers).await;
        let extra: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        seen.push(format!(
            "{method} {path} {} -> {} [{}]",
            extra.join(", "),
            res.head.status,
            res.header("cache-status").unwrap_or_default()
        ));
    }
    insta::assert_snapshot!("cache_status_sequence", seen.join("\n"));
    bench.stop().await;
}

/// Twenty concurrent misses for one URI make one origin request: the origin holds the
/// first (a gate the test opens) until the other nineteen are waiting in the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_are_collapsed_into_one_origin_request() {
    let bench = std::sync::Arc::new(Bench::start().await);
    let path = "/gate/collapse";
    let key = format!("http://{}{path}", bench.origin.addr());
    let fetch = |bench: std::sync::Arc<Bench>| tokio::spawn(async move { get(&bench, path).await });
    let mut requests = vec![fetch(bench.clone())];
    crate::support::eventually("the first request to reach the origin", || {
        bench.hits(path) == 1
    })
    .await;
    for _ in 0..19 {
        requests.push(fetch(bench.clone()));
    }
    let cache = &bench.proxy.shared().cache;
    crate::support::eventually("19 requests waiting in the proxy", || {
        cache.waiting(&key) == 19
    })
    .await;
    bench.origin.origin().open_gate("collapse");
    let mut statuses = Vec::new();
    for request in requests {
        let res = request.await.unwrap();
        assert_eq!(res.text(), "gate collapse opened\n");
        statuses.push(cache_status(&res));
    }
    assert_eq!(bench.hits(path), 1, "one request reached the origin");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| *s == "proxylab; hit; collapsed")
            .count(),
        19
    );
}

#[tokio::test]
async fn purge_removes_a_stored_response() {
    let bench = Bench::start().await;
    get(&bench, "/cache/60").await;
    let purged = send(&bench, "PURGE", "/cache/60", &[]).await;
    assert_eq!(purged.head.status, 200, "{}", purged.text());
    let after = get(&bench, "/cache/60").await;
    assert_eq!(cache_status(&after), "proxylab; fwd=uri-miss; stored");
    assert_eq!(bench.hits("/cache/60"), 2);
    send(&bench, "PURGE", "/cache/60", &[]).await;
    let again = send(&bench, "PURGE", "/cache/60", &[]).await;
    assert_eq!(again.head.status, 404);
    assert_eq!(
        bench.origin.origin().hits("/cache/60"),
        2,
        "PURGE never reaches the origin"
    );
    bench.stop().await;
}

/// With --cache-dir, stored responses survive a restart; a damaged file is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_cache_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "proxylab-disk-cache-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let with_dir = |c: &mut proxy::Config| c.cache_dir = Some(dir.clone());
    let bench = Bench::with(with_dir).await;
    get(&bench, "/cache/600").await;
    let files = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|f| f.path().extension().is_some_and(|e| e == "entry"))
                    .count()
            })
            .unwrap_or(0)
    };
    crate::support::eventually("the entry to reach the disk", || files() == 1).await;
    std::fs::write(dir.join("damaged.entry"), b"this is not a cache entry").unwrap();
    let Bench { origin, proxy } = bench;
    proxy.shutdown().await.unwrap();

    let mut config = proxy::Config::for_tests();
    config.cache_dir = Some(dir.clone());
    let proxy = proxy::start(config).await.unwrap();
    let again = Bench { origin, proxy };
    let res = get(&again, "/cache/600").await;
    assert_eq!(cache_status(&res), "proxylab; hit");
    assert_eq!(res.text(), "fresh for 600 s\n");
    assert_eq!(
        again.hits("/cache/600"),
        1,
        "served from the reloaded entry"
    );
    again.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Requests for a URI whose last response could not be stored do not queue behind one
/// another ("hit-for-pass"): while the origin holds one, another still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_uris_are_not_collapsed() {
    let bench = std::sync::Arc::new(Bench::start().await);
    let path = "/gate/pass?cc=no-store";
    let gates = bench.origin.origin().clone();
    gates.open_gate("pass");
    get(&bench, path).await; // the proxy learns this URI is not stored
    gates.close_gate("pass");
    let fetch = |bench: std::sync::Arc<Bench>| tokio::spawn(async move { get(&bench, path).await });
    let first = fetch(bench.clone());
    crate::support::eventually("the held request at the origin", || bench.hits(path) == 2).await;
    let second = fetch(bench.clone());
    crate::support::eventually("the second request at the origin too", || {
        bench.hits(path) == 3
    })
    .await;
    gates.open_gate("pass");
    for request in [first, second] {
        assert_eq!(request.await.unwrap().head.status, 200);
    }
}

/// Requests waiting behind a collapsed fetch are released the moment its response *head*
/// says it will not be stored, not when its body ends. The origin holds the first head at one
/// gate until four more requests wait in the proxy, then holds its body at another: the four
/// reach the origin themselves while that body is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_released_by_an_unstorable_head_not_its_body() {
    let bench = std::sync::Arc::new(Bench::start().await);
    let path = "/gatebody/release-body?cc=no-store&head=release-head";
    let key = format!("http://{}{path}", bench.origin.addr());
    let cache = &bench.proxy.shared().cache;
    let gates = bench.origin.origin().clone();
    let fetch = |bench: std::sync::Arc<Bench>| tokio::spawn(async move { get(&bench, path).await });
    let mut requests = vec![fetch(bench.clone())];
    crate::support::eventually("the first request at the origin", || bench.hits(path) == 1).await;
    for _ in 0..4 {
        requests.push(fetch(bench.clone()));
    }
    crate::support::eventually("four requests waiting in the proxy", || {
        cache.waiting(&key) == 4
    })
    .await;
    gates.open_gate("release-head");
    crate::support::eventually(
        "the four at the origin while the first body is held",
        || bench.hits(path) == 5,
    )
    .await;
    gates.open_gate("release-body");
    for request in requests {
        assert_eq!(request.await.unwrap().text(), "gate release-body opened\n");
    }
}

/// Stored entries age: a `max-age=1` response is a hit at first and, once a second has
/// passed, goes to the origin again — asked again until it does, within a deadline (an
/// entry that never ages would be served from the cache for ever).
#[tokio::test]
async fn a_stored_response_goes_stale_once_its_max_age_has_passed() {
    let bench = Bench::start().await;
    let path = "/cache/1?test=ages";
    get(&bench, path).await;
    let second = get(&bench, path).await;
    if bench.hits(path) == 1 {
        assert_eq!(cache_status(&second), "proxylab; hit");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
    while bench.hits(path) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "8 s after a max-age=1 response was stored, it was still served from the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        get(&bench, path).await;
    }
    bench.stop().await;
}
