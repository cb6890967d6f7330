//! `--admin ADDR`: `/metrics` (Prometheus text exposition) and `/stats` (JSON) for
//! monitoring, on their own listener, to the clients `--allow-clients` allows.
//!
//! Takes: a bound listener and the shared state. Returns: never (the task is dropped at
//! shutdown). One request per connection; anything else is 404.

use crate::conn::{self, ClientConn, Next};
use crate::error::error_page;
use crate::http::wire::{Reader, ResponseHead, Version};
use crate::observe::metrics::Gauges;
use crate::shared::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves the admin endpoints on `listener`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = conn::accept(&listener).await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, writer) = crate::observe::capture::split(stream, None, peer, false);
            let mut conn = ClientConn {
                reader: Reader::new(read),
                writer,
                peer,
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let Ok(head) = conn
                .reader
                .read_request_head(shared.limits, Some(deadline))
                .await
            else {
                return;
            };
            let (status, content_type, body) = if let Err(e) = shared.admit_client(peer) {
                (403, "text/plain; charset=utf-8", e.to_string() + "\n")
            } else {
                let gauges = Gauges {
                    cache: shared.cache.stats(),
                    upstream_idle: shared.upstreams.idle_count(),
                    cache_store_up: shared.cache.remote().map(|r| r.is_up()),
                };
                let path = head.target.split('?').next().unwrap_or("");
                match path {
                    "/metrics" => (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        shared.metrics.prometheus(&gauges),
                    ),
                    "/stats" => (200, "application/json", shared.metrics.json(&gauges) + "\n"),
                    _ => (
                        404,
                        "text/plain; charset=utf-8",
                        "404 Not Found: try /metrics or /stats\n".to_string(),
                    ),
                }
            };
            let (mut res, _) = error_page(status, "", None);
            if status == 200 {
                res = ResponseHead::new(200, "OK");
            }
            res.headers.set("Content-Type", content_type);
            res.headers.set("Content-Length", body.len().to_string());
            res.headers.set("Cache-Control", "no-store");
            let body = if head.method == "HEAD" {
                ""
            } else {
                body.as_str()
            };
            let _ = conn::respond(
                &mut conn,
                Version::Http11,
                res,
                body.as_bytes(),
                Next::Close,
            )
            .await;
        });
    }
}
