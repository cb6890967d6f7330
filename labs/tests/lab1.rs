//! Lab 1's checks as cargo tests: `cargo test -p labs --test lab1` grades the reference
//! (origin-sim's chat room), or `PROXYLAB_SUBJECT='python3 chat.py {port}' cargo test -p labs --test lab1`.

#![allow(clippy::unwrap_used)]

mod common;

check_tests! { 1;
    greeting => "greeting",
    broadcast => "broadcast",
    join_announced => "join-announced",
    disconnect => "disconnect",
    ten_clients => "ten-clients",
    vanish_mid_line => "vanish-mid-line",
    long_lines => "long-lines",
    slow_reader => "slow-reader",
}
