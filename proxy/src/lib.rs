//! proxylab's forward proxy, as a library.
//!
//! The folders show the layers; one request goes through them in this order (the order
//! itself is written once, in [`pipeline`]):
//!
//! ```text
//!  client ──TCP──▶ server      accept, cap concurrent clients, one task per connection
//!                   │            (conn: the connection's two halves, Next)
//!                   ▼
//!                 http::wire   read the request head (limits: 8 KiB target, 64 KiB head)
//!                   │
//!                   ▼
//!                 pipeline ─▶ http::target    absolute-form? origin-form? CONNECT?
//!                   │      ─▶ policy          --allow-clients, 407, 403 by the rules
//!                   │      ─▶ cache::stage    a fresh stored response answers at once
//!                   │      ─▶ http::forward   strip hop-by-hop, Host, Via, X-Forwarded-For
//!                   │      ─▶ http::upstream  resolve (or --resolve), dial, or reuse
//!                   │      ─▶ http::relay     body up, response down, re-framed; stored
//!                   │      ─▶ http::tunnel    CONNECT: bytes both ways
//!                   ▼
//!                 error        anything that failed becomes one status and one sentence
//!                   │
//!                   ▼
//!                 observe      log line, access log, metrics (from the RequestContext)
//! ```
//!
//! - [`config`]: every command-line option, with defaults and help text.
//! - [`server`]: the accept loop, the per-connection loop, graceful shutdown.
//! - [`conn`]: a client connection ([`conn::ClientConn`]), [`conn::Next`], writing an answer.
//! - [`pipeline`]: one request from head to log line — the order of the stages.
//! - [`request`]: the per-request record ([`request::RequestContext`]) and [`request::Failure`].
//! - [`shared`]: what every connection shares ([`shared::Shared`]).
//! - [`http`]: HTTP/1.x syntax, header rules, upstream pool, relay, tunnels, own answers.
//! - [`cache`]: the HTTP cache (RFC 9111): the stage, the store, entries, freshness, disk.
//! - [`policy`]: who may use the proxy for what: client networks, authentication, rules.
//! - [`observe`]: what the operator sees: access log, metrics, admin endpoints, captures.
//! - [`error`]: the one error type, tagged by side, and the error pages.
//!
//! Dependencies point down this list's layers and never back: the observers read the
//! per-request record, not the stages; no module imports one that imports it (a unit test,
//! `no_module_imports_itself_back`, keeps it so).
//!
//! Where this simplifies: it speaks HTTP/1.x only (no HTTP/2), and it never retries a
//! request that carried a body. A production proxy would add both.

#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod conn;
pub mod error;
pub mod http;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod request;
pub mod server;
pub mod shared;

#[cfg(test)]
mod layering;

pub use config::Config;

/// Sets up logging to stderr for a binary: `filter` (e.g. `info`) unless RUST_LOG is set;
/// colours only on a terminal.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
pub use error::ProxyError;
pub use server::{run, start, Handle};
