//! What the operator sees. Every request ends in [`record`]: its [`RequestContext`] becomes
//! a log line on stderr, an access-log line, and counts in the metrics.
//!
//! - [`accesslog`]: `--access-log` lines in Squid, common, combined or JSON format.
//! - [`metrics`]: counters and gauges; [`admin`] serves them on `--admin`.
//! - [`capture`]: `--pcap`, both legs of every connection as frames.
//! - [`batch`]: the writer threads' shared habit of draining a queue in ticks.
//!
//! The observers read the per-request record ([`crate::request`]) and never the stages.

pub mod accesslog;
pub mod admin;
pub mod batch;
pub mod capture;
pub mod metrics;

use crate::request::RequestContext;
use accesslog::AccessLog;
use metrics::Metrics;

/// The end of every request: the log line, the access log, the metrics.
pub fn record(access_log: Option<&AccessLog>, metrics: &Metrics, ctx: &RequestContext) {
    log(ctx);
    if let Some(access_log) = access_log {
        access_log.write(ctx);
    }
    metrics.record(ctx);
}

fn log(ctx: &RequestContext) {
    // The elapsed time is read only when a line is written (the macros skip their
    // arguments when their level is off).
    if ctx.method == "CONNECT" && ctx.status == 200 {
        // A tunnel is a connection-long event: worth a line at the default level.
        tracing::info!(
            id = ctx.id,
            client = %ctx.peer,
            "[TUNNEL CLOSED] {} ({} B up, {} B down, {:.1?}){}",
            ctx.target,
            ctx.bytes_up,
            ctx.bytes_down,
            ctx.started.elapsed(),
            ctx.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        return;
    }
    match &ctx.error {
        None => tracing::debug!(
            id = ctx.id,
            client = %ctx.peer,
            reused = ctx.upstream_reused,
            "{} {} -> {} ({} B up, {} B down, {:.1?})",
            ctx.method, ctx.target, ctx.status, ctx.bytes_up, ctx.bytes_down, ctx.started.elapsed()
        ),
        Some(err) => tracing::warn!(
            id = ctx.id,
            client = %ctx.peer,
            "{} {} -> {}: {err} ({:.1?})",
            ctx.method,
            ctx.target,
            if ctx.status == 0 { "aborted".to_string() } else { ctx.status.to_string() },
            ctx.started.elapsed()
        ),
    }
}
