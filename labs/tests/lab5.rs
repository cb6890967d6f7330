//! Lab 5's checks as cargo tests: `cargo test -p labs --test lab5` grades the reference
//! proxy, or `PROXYLAB_SUBJECT='python3 myproxy.py {port}' cargo test -p labs --test lab5`.

#![allow(clippy::unwrap_used)]

mod common;

check_tests! { 5;
    connect_tls => "connect-tls",
    port_policy => "port-policy",
    block_http => "block-http",
    block_wildcard => "block-wildcard",
    block_connect => "block-connect",
    rule_added_live => "rule-added-live",
    access_log => "access-log",
    chat_tunnel => "chat-tunnel",
}
