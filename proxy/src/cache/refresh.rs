//! Background revalidation (RFC 5861 §3, `stale-while-revalidate`): the client already
//! has the stale stored response; a task of its own asks the origin whether it still
//! holds — one such request per URI at a time — and stores what comes back, as a
//! revalidation in the foreground would: a 304 refreshes the stored response, a storable
//! response replaces it, an unstorable one removes it, a failure leaves it as it was.

use super::entry::CONDITIONAL_FIELDS;
use super::freshness::{self, StoreRequest};
use super::{refresh_headers, Cache, Entry};
use crate::http::forward;
use crate::http::target::Authority;
use crate::http::wire::{self, Framing, Headers, RequestHead};
use crate::policy::rules::Direction;
use crate::policy::Rewrites;
use crate::shared::Shared;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

/// A stale stored response served at once, to be revalidated in the background.
#[derive(Debug)]
pub struct Refresh {
    /// Its cache key.
    pub key: String,
    /// The stored response the client got.
    pub stale: Arc<Entry>,
    /// The client's header section (its variant, for Vary).
    pub request: Headers,
    /// The client's request carried `Authorization` (the new response must allow sharing).
    pub authorization: bool,
}

/// The client's own request fields a revalidation leaves out, besides its conditionals.
const CLIENT_ONLY: [&str; 3] = ["range", "content-length", "transfer-encoding"];

/// Starts revalidating `refresh.stale` in the background: `up` is the client's request as
/// it would have gone upstream (Host, Via, X-Forwarded-For, rewrites), sent to the first
/// of `upstreams` that answers as a GET with the stored response's validators instead of
/// the client's conditionals. The URI was claimed ([`Cache::begin_refresh`]); the claim
/// ends with the revalidation.
pub fn start(
    shared: &Shared,
    refresh: Refresh,
    mut up: RequestHead,
    upstreams: Vec<Authority>,
    rewrites: Option<Rewrites>,
) {
    let Some(shared) = shared.arc() else {
        shared.cache.end_refresh(&refresh.key);
        return;
    };
    up.method = "GET".into();
    up.headers.0.retain(|h| {
        !CONDITIONAL_FIELDS
            .iter()
            .chain(&CLIENT_ONLY)
            .any(|name| h.name.eq_ignore_ascii_case(name))
    });
    refresh.stale.add_conditionals(&mut up.headers);
    let mut wire_head = Vec::with_capacity(512);
    up.write_to(&mut wire_head);
    tokio::spawn(async move {
        let _claim = Claim(&shared.cache, &refresh.key);
        // Another fetch stored a response meanwhile: this one has nothing left to do.
        let current = shared.cache.lookup(&refresh.key, &refresh.request);
        if !current.is_some_and(|entry| Arc::ptr_eq(&entry, &refresh.stale)) {
            return;
        }
        let done = revalidate(&shared, &refresh, &upstreams, &wire_head, rewrites.as_ref());
        match done.await {
            Ok(outcome) => tracing::info!("background revalidation of {}: {outcome}", refresh.key),
            Err(e) => tracing::warn!(
                "background revalidation of {} failed, the stale response is kept: {e}",
                refresh.key
            ),
        }
    });
}

/// The claim on a URI's background revalidation ([`Cache::begin_refresh`]), given up when
/// the revalidation ends, however it ends.
struct Claim<'a>(&'a Cache, &'a str);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.end_refresh(self.1);
    }
}

/// Sends the conditional request and stores what the origin answers; says what happened.
async fn revalidate(
    shared: &Shared,
    refresh: &Refresh,
    upstreams: &[Authority],
    wire_head: &[u8],
    rewrites: Option<&Rewrites>,
) -> Result<&'static str, String> {
    let request_time = SystemTime::now();
    let mut up = shared
        .upstreams
        .checkout_first(upstreams, shared.reverse.as_ref().map(|r| &r.health))
        .await
        .map_err(|e| e.to_string())?;
    up.writer
        .write_all(wire_head)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let waited = shared.config.upstream_timeout;
    let deadline = tokio::time::Instant::now() + waited;
    let mut res = loop {
        let res = up
            .reader
            .read_response_head(shared.limits, Some(deadline))
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        match res.status {
            101 => return Err("unexpected 101 (no upgrade was asked for)".into()),
            100..=199 => continue,
            _ => break res,
        }
    };
    let from = wire::response_framing("GET", &res).map_err(str::to_string)?;
    let reusable = res.keeps_alive() && from != Framing::Close;
    let cache = &shared.cache;
    let stale = &refresh.stale;
    let outcome = if res.status == 304 {
        wire::discard_body(&mut up.reader, from, Some(waited))
            .await
            .map_err(|e| format!("304 body: {e}"))?;
        let mut head = stale.head.clone();
        head.headers = refresh_headers(&stale.head.headers, &res.headers);
        let times = (request_time, SystemTime::now());
        let vary = stale.vary.clone();
        let refreshed = Entry::assemble(head, stale.body.clone(), times, vary, cache.targeting());
        cache.store(&refresh.key, refreshed);
        "304, the stored response is fresh again"
    } else {
        forward::strip_hop_by_hop(&mut res.headers);
        if let Some(rewrites) = rewrites {
            rewrites.apply(Direction::Response, &mut res.headers);
        }
        let mut capture = wire::Capture::new(cache.max_object());
        let sink = &mut tokio::io::sink();
        let read = wire::copy_body_but_last_write(
            &mut up.reader,
            from,
            sink,
            Framing::Close,
            Vec::new(),
            Some(waited),
            Some(&mut capture),
        );
        read.await.map_err(|e| format!("response body: {e}"))?;
        let request = StoreRequest {
            method: "GET",
            no_store: false,
            authorization: refresh.authorization,
        };
        let control = cache.targeting().control(&res.headers);
        let storable = freshness::storable(&request, res.status, &res.headers, &control);
        let times = (request_time, SystemTime::now());
        match (storable, capture.into_body()) {
            (true, Some(body)) => {
                let status = res.status;
                match Entry::new(res, body.into(), &refresh.request, times, cache.targeting()) {
                    Some(entry) => {
                        cache.store(&refresh.key, entry);
                        if status == 200 {
                            "a new response, stored"
                        } else {
                            "a new response (not 200), stored"
                        }
                    }
                    None => {
                        cache.invalidate(&refresh.key);
                        "Vary: *, the stored response removed"
                    }
                }
            }
            _ if res.status >= 500 => "the origin answered 5xx, the stale response is kept",
            _ => {
                cache.invalidate(&refresh.key);
                "not storable, the stored response removed"
            }
        }
    };
    if reusable {
        shared.upstreams.checkin(up);
    }
    Ok(outcome)
}
