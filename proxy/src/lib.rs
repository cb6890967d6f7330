//! proxylab's forward proxy, as a library.
//!
//! One request goes through these modules, in this order (the order itself is written
//! once, in [`pipeline`]):
//!
//! ```text
//!  client ──TCP──▶ server     accept, cap concurrent clients, one task per connection
//!                   │
//!                   ▼
//!                 wire        read the request head (limits: 8 KiB target, 64 KiB head)
//!                   │
//!                   ▼
//!                 pipeline ─▶ target    absolute-form? origin-form (status page)? CONNECT ─▶ tunnel
//!                   │      ─▶ auth, rules  407 without credentials; 403 when a rule blocks
//!                   │      ─▶ cache     a fresh stored response answers at once
//!                   │      ─▶ forward   strip hop-by-hop, Host, Via, X-Forwarded-For, loops
//!                   │      ─▶ upstream  resolve (or --resolve), dial, or reuse from the pool
//!                   │      ─▶ wire      body up, response head and body down, re-framed
//!                   ▼
//!                 error      anything that failed becomes one status and one sentence
//!                   │
//!                   ▼
//!                 log line, access log, metrics (RequestContext), then the next request
//! ```
//!
//! - [`config`]: every command-line option, with defaults and help text.
//! - [`wire`]: HTTP/1.x heads and bodies on a byte stream; shared with origin-sim and labs.
//! - [`target`]: what the request-target names (absolute-form, origin-form, authority-form).
//! - [`forward`]: the header rules a proxy must follow (RFC 9110 §7.6).
//! - [`upstream`]: name resolution, dialing and the keep-alive pool.
//! - [`cache`], [`freshness`]: the shared HTTP cache and its arithmetic (RFC 9111).
//! - [`reverse`]: reverse mode's upstream choice and passive health.
//! - [`tunnel`]: CONNECT tunnels, bytes both ways with half-close.
//! - [`rules`]: filtering rules (block, allow, header rewrites) and their live reload.
//! - [`auth`]: Basic proxy authentication against a file of bcrypt hashes.
//! - [`accesslog`], [`metrics`], [`admin`], [`capture`]: what the operator sees: access log
//!   lines, counters served on `--admin`, and `--pcap` captures of both legs.
//! - [`pipeline`]: one request from head to log line.
//! - [`server`]: the accept loop, per-connection loop, and graceful shutdown.
//! - [`error`]: the one error type, tagged by side, and the error pages.
//!
//! Where this simplifies: it speaks HTTP/1.x only (no HTTP/2), and it never retries a
//! request that carried a body. A production proxy would add both.

#![forbid(unsafe_code)]

pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod batch;
pub mod cache;
pub mod capture;
pub mod config;
pub mod disk;
pub mod error;
pub mod forward;
pub mod freshness;
pub mod metrics;
pub mod pipeline;
pub mod reverse;
pub mod rules;
pub mod server;
pub mod target;
pub mod tunnel;
pub mod upstream;
pub mod wire;

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
