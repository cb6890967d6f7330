//! Lab 2's checks as cargo tests: `cargo test -p labs --test lab2` grades the reference
//! proxy, or `PROXYLAB_SUBJECT='python3 myproxy.py {port}' cargo test -p labs --test lab2`.

#![allow(clippy::unwrap_used)]

mod common;

check_tests! { 2;
    get_small => "get-small",
    get_large_binary => "get-large-binary",
    head => "head",
    post_body => "post-body",
    put_chunked => "put-chunked",
    chunked_response => "chunked-response",
    close_delimited => "close-delimited",
    status_codes => "status-codes",
    origin_form => "origin-form",
    headers_kept => "headers-kept",
    hop_by_hop => "hop-by-hop",
    via => "via",
    keep_alive => "keep-alive",
    unreachable_502 => "unreachable-502",
    malformed_400 => "malformed-400",
}
