//! Lab 3's checks as cargo tests: `cargo test -p labs --test lab3` grades the reference
//! proxy, or `PROXYLAB_SUBJECT='python3 myproxy.py {port}' cargo test -p labs --test lab3`.

#![allow(clippy::unwrap_used)]

mod common;

check_tests! { 3;
    overlap => "overlap",
    fifty_clients => "fifty-clients",
    slow_client => "slow-client",
    beyond_limit => "beyond-limit",
}
