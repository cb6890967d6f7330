//! proxylab's workspace integration tests: one binary (ripgrep's pattern), one module per
//! area. Each test starts its own origin-sim and proxy on 127.0.0.1:0 inside the test's
//! runtime; nothing leaves loopback and nothing asks DNS.

// Tests may panic on the unexpected: that is how they fail.
#![allow(clippy::unwrap_used)]

// Starting servers in-process, raw HTTP/1 exchanges, and a hyper client through the proxy.
mod support;

// Every method and body framing arrives byte-exact (proptest over sizes and chunkings).
mod forwarding;
// What the proxy changes in headers: hop-by-hop, Host, Via, X-Forwarded-For, Max-Forwards.
mod headers;
// Upstream connection reuse and client keep-alive, proven by X-Origin-Conn.
mod keepalive;
// Every error status the proxy answers itself, and what clients see on upstream faults.
mod errors;
// Hostile input: bad framing refused, nothing smuggled, refusals logged and counted.
mod hostile;
// Many clients at once, and graceful shutdown with requests in flight.
mod concurrency;
// CONNECT tunnels: byte-exact, TLS end to end, port policy, loops, half-close.
mod tunnels;
// The chat room through the proxy: ten clients, in order, with a leaver and a staller.
mod chat;
// The shared cache: one RFC 9111 rule per test, proven by X-Origin-Hits.
mod caching;
// Replicas sharing one cache through a real redis-server, and parent proxies.
mod cluster;
// Reverse mode: round-robin upstreams, Host kept, refused upstreams skipped, cache shared.
mod reverse;
// Filtering rules with live reload, client access control, proxy authentication.
mod filtering;
// The access log in every format, /metrics and /stats.
mod observability;
