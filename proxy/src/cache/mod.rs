//! The shared HTTP cache (RFC 9111), in eight rooms:
//!
//! - [`stage`]: the pipeline's cache stage — look up, serve a stored response, plan a
//!   revalidation, store what comes back, invalidate after unsafe methods, `PURGE`.
//! - [`refresh`]: revalidation in the background, for `stale-while-revalidate`.
//! - [`store`]: the bounded in-memory store, keyed by URI with one variant per `Vary`
//!   combination, and request collapsing.
//! - [`entry`]: one stored response and the facts worked out once when it is stored.
//! - [`partial`]: 206 responses kept for the ranges they cover, combined into whole ones.
//! - [`freshness`]: the arithmetic — Cache-Control, lifetimes, ages, what may be stored.
//! - [`disk`]: `--cache-dir`, entries as files that survive a restart.
//! - [`remote`]: `--cache-store`, a second level in Redis shared by replicas, with locks
//!   for collapsing across them and events for invalidating everywhere.
//!
//! Dependencies run one way: `stage` → `refresh` → `store` → `remote` → `disk`, `partial` →
//! `entry` → `freshness`.

pub mod disk;
pub mod entry;
pub mod freshness;
pub mod partial;
pub mod refresh;
pub mod remote;
pub mod stage;
pub mod store;

pub use entry::{key, refresh_headers, Entry, Facts};
pub use store::{Cache, CacheStats, Flight, FlightGuard, Found, PASS_FOR};
