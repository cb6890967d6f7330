//! Lab 4's checks as cargo tests: `cargo test -p labs --test lab4` grades the reference
//! proxy, or `PROXYLAB_SUBJECT='python3 myproxy.py {port}' cargo test -p labs --test lab4`.

#![allow(clippy::unwrap_used)]

mod common;

check_tests! { 4;
    hit => "hit",
    no_store_private => "no-store-private",
    max_age_expiry => "max-age-expiry",
    etag_revalidation => "etag-revalidation",
    vary => "vary",
    post_invalidation => "post-invalidation",
    size_limit => "size-limit",
    eviction => "eviction",
    origin_stopped => "origin-stopped",
}
