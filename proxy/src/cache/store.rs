//! The store of the shared HTTP cache (RFC 9111): what is stored, under which key, and for
//! how long.
//!
//! Takes: responses the cache stage decided were storable, and lookups by URI and request
//! headers. Returns: stored responses (the stage, [`super::stage`], decides with
//! [`super::freshness`] whether they are fresh enough to serve). Keys are the absolute URI; each key holds one
//! variant per combination of the request headers its `Vary` nominates. Memory is bounded
//! in bytes: the least recently used entries are evicted (the `lru` crate keeps the order;
//! the byte accounting is ours). Lab 4 grades this module.
//!
//! Concurrent misses for one key make one upstream request ([`Cache::join_flight`]): the
//! others wait for it and are served from what it stored.
//!
//! With `--cache-dir`, entries are also kept on disk ([`super::disk`]) and reloaded at start.

use super::entry::Entry;
use super::freshness::Targeting;
use super::partial::Partial;
use super::remote::{Lock, Remote};
use crate::http::wire::Headers;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug)]
struct Store {
    entries: lru::LruCache<String, Vec<Arc<Entry>>>,
    bytes: usize,
    /// URIs whose last response could not be stored, and until when that is assumed to
    /// hold: requests for them go straight upstream instead of queueing behind one another
    /// for a response that will not be shared ("hit-for-pass", as Varnish calls it).
    uncacheable: lru::LruCache<String, std::time::Instant>,
    /// Partial (206) responses by key, counted in `bytes` too; evicted before whole ones.
    partials: lru::LruCache<String, Arc<Partial>>,
}

/// How long a URI is remembered as uncacheable.
pub const PASS_FOR: std::time::Duration = std::time::Duration::from_secs(120);
/// How many uncacheable URIs are remembered.
const PASS_ENTRIES: usize = 10_000;

/// What a lookup found.
#[derive(Debug, Default)]
pub struct Found {
    /// The stored variant that matches the request.
    pub entry: Option<Arc<Entry>>,
    /// The URI's last response could not be stored (hit-for-pass).
    pub pass: bool,
    /// No variant matches, but the URI has others stored (`Cache-Status: fwd=vary-miss`).
    pub other_variants: bool,
}

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub evictions: u64,
}

/// The in-memory store, bounded in bytes.
#[derive(Debug)]
pub struct Cache {
    /// `--cache-dir`: where entries are also kept, to survive a restart.
    dir: Option<std::path::PathBuf>,
    max_bytes: usize,
    max_object: usize,
    /// The targeted cache-control fields it follows (RFC 9213).
    targeting: Targeting,
    store: Mutex<Store>,
    evictions: std::sync::atomic::AtomicU64,
    /// Misses being fetched right now, by key: later requests for the same key wait for
    /// the first instead of asking the origin again (request collapsing).
    flights: Mutex<HashMap<String, watch::Sender<()>>>,
    /// Keys being revalidated in the background right now (stale-while-revalidate): one
    /// revalidation per key at a time.
    refreshing: Mutex<std::collections::HashSet<String>>,
    /// `--cache-store`: the second level, shared with other replicas.
    remote: Option<Arc<Remote>>,
}

/// A request's part in collapsing: the one that fetches, or one that waits.
#[derive(Debug)]
pub enum Flight<'a> {
    /// Fetch it; when this guard is dropped (stored or not), the waiters wake up.
    Leader(FlightGuard<'a>),
    /// Wait for the leader (`changed()` returns when it is done), then look again.
    Follower(watch::Receiver<()>),
}

/// Ends a flight when dropped, whatever happened to the leader's request.
#[derive(Debug)]
pub struct FlightGuard<'a> {
    cache: &'a Cache,
    key: String,
    /// The shared store's lock on the key, when this replica fetches for all of them.
    token: Option<String>,
}

impl FlightGuard<'_> {
    /// Request collapsing across replicas: takes the shared store's lock on the key, or,
    /// when another replica holds it, waits until that replica has stored the response
    /// (or given up, or its lock expired) and loads what it stored. Says whether it waited
    /// for another replica. Without a shared store (or with one that is down), nothing.
    pub async fn across_replicas(&mut self) -> bool {
        let Some(remote) = &self.cache.remote else {
            return false;
        };
        match remote.lock(&self.key).await {
            Lock::Acquired(token) => {
                self.token = Some(token);
                false
            }
            Lock::Held(mut done, left) => {
                let _ = tokio::time::timeout(left, done.changed()).await;
                self.cache.load_remote(&self.key).await;
                true
            }
            Lock::Stored(entries) => {
                self.cache.insert_remote(&self.key, entries);
                true
            }
            Lock::Unavailable => false,
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.cache.flights.lock() {
            flights.remove(&self.key);
        }
        if let (Some(token), Some(remote)) = (self.token.take(), &self.cache.remote) {
            remote.unlock(&self.key, token);
        }
    }
}

impl Cache {
    pub fn new(max_bytes: usize, max_object: usize) -> Cache {
        Cache {
            dir: None,
            max_bytes,
            max_object: max_object.min(max_bytes),
            targeting: Targeting::default(),
            store: Mutex::new(Store {
                entries: lru::LruCache::unbounded(),
                uncacheable: lru::LruCache::new(
                    std::num::NonZeroUsize::new(PASS_ENTRIES)
                        .unwrap_or(std::num::NonZeroUsize::MIN),
                ),
                bytes: 0,
                partials: lru::LruCache::unbounded(),
            }),
            evictions: Default::default(),
            flights: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(Default::default()),
            remote: None,
        }
    }

    /// Shares entries with other replicas through `remote` (`--cache-store`).
    pub fn with_remote(mut self, remote: Arc<Remote>) -> Cache {
        self.remote = Some(remote);
        self
    }

    /// The shared store, when there is one.
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        self.remote.as_ref()
    }

    /// Loads what the shared store holds for `key` into memory (a miss here may be a hit
    /// there); says whether it found anything.
    pub async fn load_remote(&self, key: &str) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let entries = remote.fetch(key).await;
        self.insert_remote(key, entries)
    }

    /// Keeps entries read from the shared store in memory; says whether there were any.
    fn insert_remote(&self, key: &str, entries: Vec<Entry>) -> bool {
        let mut found = false;
        for entry in entries {
            if entry.body.len() <= self.max_object && self.enabled() {
                self.insert(key, Arc::new(entry));
                found = true;
            }
        }
        found
    }

    /// Follows these targeted cache-control fields (RFC 9213) instead of only
    /// `CDN-Cache-Control`. Set before [`Cache::with_dir`], which reads entries with them.
    pub fn with_targeting(mut self, targeting: Targeting) -> Cache {
        self.targeting = targeting;
        self
    }

    /// The targeted cache-control fields this cache follows.
    pub fn targeting(&self) -> &Targeting {
        &self.targeting
    }

    /// Joins the flight for `key`: the first request leads, later ones follow.
    pub fn join_flight(&self, key: &str) -> Option<Flight<'_>> {
        let mut flights = self.flights.lock().ok()?;
        if let Some(leader) = flights.get(key) {
            return Some(Flight::Follower(leader.subscribe()));
        }
        flights.insert(key.to_string(), watch::channel(()).0);
        Some(Flight::Leader(FlightGuard {
            cache: self,
            key: key.to_string(),
            token: None,
        }))
    }

    /// Claims the background revalidation of `key`: false when one is under way already.
    /// The claim lasts until [`Cache::end_refresh`].
    pub fn begin_refresh(&self, key: &str) -> bool {
        match self.refreshing.lock() {
            Ok(mut keys) => keys.insert(key.to_string()),
            Err(_) => false,
        }
    }

    /// Ends the background revalidation of `key`: the next stale hit may start another.
    pub fn end_refresh(&self, key: &str) {
        if let Ok(mut keys) = self.refreshing.lock() {
            keys.remove(key);
        }
    }

    /// How many requests are waiting for the fetch of `key` in flight.
    pub fn waiting(&self, key: &str) -> usize {
        self.flights
            .lock()
            .ok()
            .and_then(|f| f.get(key).map(|s| s.receiver_count()))
            .unwrap_or(0)
    }

    /// Whether caching is on (`--cache-size 0` turns it off).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The largest body that is stored.
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    /// The stored variant of `key` that matches `request`'s headers, if any.
    pub fn lookup(&self, key: &str, request: &Headers) -> Option<Arc<Entry>> {
        self.lookup_or_pass(key, request).entry
    }

    /// [`Cache::lookup`], whether `key` recently proved uncacheable (then concurrent
    /// misses should not wait for one another), and whether other variants are stored.
    pub fn lookup_or_pass(&self, key: &str, request: &Headers) -> Found {
        let mut found = Found::default();
        let Ok(mut store) = self.store.lock() else {
            return found;
        };
        if let Some(variants) = store.entries.get(key) {
            found.entry = variants.iter().find(|e| e.matches(request)).cloned();
            found.other_variants = found.entry.is_none() && !variants.is_empty();
            if found.entry.is_some() {
                return found;
            }
        }
        found.pass = store
            .uncacheable
            .get(key)
            .is_some_and(|until| *until > std::time::Instant::now());
        found
    }

    /// Remembers that `key`'s response could not be stored (see [`PASS_FOR`]).
    pub fn mark_uncacheable(&self, key: &str) {
        if let Ok(mut store) = self.store.lock() {
            store
                .uncacheable
                .put(key.to_string(), std::time::Instant::now() + PASS_FOR);
        }
    }

    /// Stores `entry` under `key`, replacing the variant it matches; then evicts the least
    /// recently used entries until the cache fits its budget again. With `--cache-dir`, the
    /// entry is also written to disk, and with `--cache-store` to the shared store (both
    /// off the request's path).
    pub fn store(&self, key: &str, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        if entry.body.len() > self.max_object || !self.enabled() {
            return entry;
        }
        if let Some(dir) = &self.dir {
            let path = super::disk::file_for(dir, key, &entry);
            let contents = super::disk::encode(key, &entry);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = super::disk::write_atomically(&path, &contents) {
                    tracing::warn!("cannot write cache file {}: {e}", path.display());
                }
            });
        }
        if let Some(remote) = &self.remote {
            remote.put(key, &entry);
        }
        self.insert(key, entry.clone());
        entry
    }

    fn insert(&self, key: &str, entry: Arc<Entry>) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        let mut freed = 0;
        let variants = store.entries.get_or_insert_mut(key.to_string(), Vec::new);
        variants.retain(|old| {
            let same = old.vary == entry.vary;
            if same {
                freed += old.size();
            }
            !same
        });
        let size = entry.size();
        variants.push(entry);
        store.bytes = store.bytes + size - freed;
        store.uncacheable.pop(key);
        // A whole response makes the pieces of one redundant.
        if let Some(piece) = store.partials.pop(key) {
            store.bytes = store.bytes.saturating_sub(piece.size());
        }
        self.evict(&mut store);
    }

    /// Evicts until the store fits its budget: partial responses first, then the least
    /// recently used whole ones.
    fn evict(&self, store: &mut Store) {
        while store.bytes > self.max_bytes {
            if let Some((_, piece)) = store.partials.pop_lru() {
                store.bytes = store.bytes.saturating_sub(piece.size());
                continue;
            }
            let Some((evicted_key, evicted)) = store.entries.pop_lru() else {
                break;
            };
            let size: usize = evicted.iter().map(|e| e.size()).sum();
            store.bytes = store.bytes.saturating_sub(size);
            self.evictions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.forget_files(&evicted_key, &evicted);
        }
    }

    /// The partial (206) response held for `key`, if any.
    pub fn partial(&self, key: &str) -> Option<Arc<Partial>> {
        self.store.lock().ok()?.partials.get(key).cloned()
    }

    /// Keeps a 206's piece under `key`, combined with the pieces already held when they
    /// are of the same representation (RFC 9111 §3.4). Once the pieces make the whole
    /// representation, it is stored as a complete response instead; says whether it did.
    pub fn store_partial(&self, key: &str, piece: Partial) -> bool {
        if !self.enabled() || piece.total > self.max_object as u64 {
            return false;
        }
        let combined = {
            let Ok(mut store) = self.store.lock() else {
                return false;
            };
            let combined = match store.partials.pop(key) {
                Some(held) => {
                    store.bytes = store.bytes.saturating_sub(held.size());
                    held.combine(piece)
                }
                None => piece,
            };
            if combined.whole().is_none() {
                store.bytes += combined.size();
                store.partials.put(key.to_string(), Arc::new(combined));
                self.evict(&mut store);
                return false;
            }
            combined
        };
        let Some((head, body)) = combined.whole() else {
            return false;
        };
        let times = (combined.request_time, combined.response_time);
        let none = Headers::default();
        match Entry::new(head, body, &none, times, &self.targeting) {
            Some(entry) => {
                self.store(key, entry);
                true
            }
            None => false,
        }
    }

    /// Removes the disk copies of `entries`.
    fn forget_files(&self, key: &str, entries: &[Arc<Entry>]) {
        if let Some(dir) = &self.dir {
            let paths: Vec<_> = entries
                .iter()
                .map(|e| super::disk::file_for(dir, key, e))
                .collect();
            tokio::task::spawn_blocking(move || {
                for path in paths {
                    let _ = std::fs::remove_file(path);
                }
            });
        }
    }

    /// Also keeps entries in `dir`, and loads the ones already there (a damaged file is
    /// skipped with a warning). Returns the cache and how many entries were loaded.
    pub fn with_dir(mut self, dir: std::path::PathBuf) -> std::io::Result<(Cache, usize)> {
        let (found, damaged) = super::disk::load(&dir, &self.targeting)?;
        for (path, why) in damaged {
            tracing::warn!("cache file {} skipped: {why}", path.display());
        }
        let mut loaded = 0;
        for (key, entry) in found {
            if entry.body.len() <= self.max_object {
                self.insert(&key, Arc::new(entry));
                loaded += 1;
            }
        }
        self.dir = Some(dir);
        Ok((self, loaded))
    }

    /// Removes every variant of `key` (after an unsafe method succeeded on it, or on
    /// PURGE), here and in the shared store, whose other replicas are told to remove
    /// theirs; says whether there was anything to remove here.
    pub fn invalidate(&self, key: &str) -> bool {
        if let Some(remote) = &self.remote {
            remote.remove(key);
        }
        self.invalidate_here(key)
    }

    /// [`Cache::invalidate`] in this replica's memory (and disk) only: what another
    /// replica's invalidation does here.
    pub fn invalidate_here(&self, key: &str) -> bool {
        let Ok(mut store) = self.store.lock() else {
            return false;
        };
        let piece = store.partials.pop(key);
        if let Some(piece) = &piece {
            store.bytes = store.bytes.saturating_sub(piece.size());
        }
        match store.entries.pop(key) {
            Some(removed) => {
                let size: usize = removed.iter().map(|e| e.size()).sum();
                store.bytes = store.bytes.saturating_sub(size);
                self.forget_files(key, &removed);
                true
            }
            None => piece.is_some(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let evictions = self.evictions.load(std::sync::atomic::Ordering::Relaxed);
        self.store
            .lock()
            .map_or(CacheStats::default(), |s| CacheStats {
                entries: s.entries.iter().map(|(_, v)| v.len()).sum(),
                bytes: s.bytes,
                evictions,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::refresh_headers;
    use crate::http::wire::ResponseHead;
    use bytes::Bytes;
    use std::time::SystemTime;

    fn entry(body: &str, vary: &[(&str, &str)], request: &[(&str, &str)]) -> Entry {
        let mut head = ResponseHead::new(200, "OK");
        for (n, v) in vary {
            head.headers.push(n.to_string(), *v);
        }
        let mut req = Headers::default();
        for (n, v) in request {
            req.push(n.to_string(), *v);
        }
        let now = SystemTime::now();
        Entry::new(
            head,
            Bytes::from(body.to_string()),
            &req,
            (now, now),
            &Targeting::default(),
        )
        .unwrap()
    }

    #[test]
    fn vary_selects_the_variant() {
        let cache = Cache::new(1 << 20, 1 << 20);
        cache.store(
            "k",
            entry(
                "en",
                &[("Vary", "Accept-Language")],
                &[("Accept-Language", "en")],
            ),
        );
        cache.store(
            "k",
            entry(
                "fr",
                &[("Vary", "Accept-Language")],
                &[("Accept-Language", "fr")],
            ),
        );
        let mut fr = Headers::default();
        fr.push("accept-language", "fr");
        assert_eq!(cache.lookup("k", &fr).unwrap().body, "fr");
        let none = Headers::default();
        assert!(
            cache.lookup("k", &none).is_none(),
            "absent header is its own variant"
        );
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn vary_star_is_never_stored() {
        let head = {
            let mut h = ResponseHead::new(200, "OK");
            h.headers.push("Vary", "*");
            h
        };
        let now = SystemTime::now();
        assert!(Entry::new(
            head,
            Bytes::new(),
            &Headers::default(),
            (now, now),
            &Targeting::default()
        )
        .is_none());
    }

    #[test]
    fn least_recently_used_is_evicted_first_with_byte_accounting() {
        let one = entry(&"x".repeat(1000), &[], &[]).size();
        let cache = Cache::new(one * 2, one * 2);
        cache.store("a", entry(&"x".repeat(1000), &[], &[]));
        cache.store("b", entry(&"x".repeat(1000), &[], &[]));
        assert!(cache.lookup("a", &Headers::default()).is_some()); // a is now the most recent
        cache.store("c", entry(&"x".repeat(1000), &[], &[]));
        assert!(
            cache.lookup("b", &Headers::default()).is_none(),
            "b was least recently used"
        );
        assert!(cache.lookup("a", &Headers::default()).is_some());
        assert!(cache.lookup("c", &Headers::default()).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (2, 1));
        assert_eq!(stats.bytes, one * 2);
        cache.invalidate("a");
        assert_eq!(cache.stats().bytes, one);
    }

    #[test]
    fn objects_over_the_limit_are_not_stored() {
        let cache = Cache::new(1 << 20, 10);
        cache.store("big", entry("more than ten bytes", &[], &[]));
        assert!(cache.lookup("big", &Headers::default()).is_none());
    }

    #[test]
    fn a_304_refreshes_the_stored_headers() {
        let mut stored = Headers::default();
        stored.push("Content-Length", "5");
        stored.push("ETag", "\"v1\"");
        stored.push("Cache-Control", "max-age=0");
        let mut fresh = Headers::default();
        fresh.push("Cache-Control", "max-age=60");
        fresh.push("Content-Length", "0");
        let updated = refresh_headers(&stored, &fresh);
        assert_eq!(updated.get("cache-control").unwrap(), b"max-age=60");
        assert_eq!(updated.get("content-length").unwrap(), b"5");
        assert_eq!(updated.get("etag").unwrap(), b"\"v1\"");
    }
    #[test]
    fn an_object_of_exactly_the_limit_is_stored() {
        let cache = Cache::new(1 << 20, 10);
        cache.store("ten", entry("0123456789", &[], &[]));
        assert!(cache.lookup("ten", &Headers::default()).is_some());
        assert_eq!(cache.max_object(), 10);
        assert_eq!(
            Cache::new(100, 1 << 20).max_object(),
            100,
            "never above the whole budget"
        );
    }

    #[test]
    fn size_zero_turns_the_cache_off() {
        let off = Cache::new(0, 0);
        assert!(!off.enabled());
        off.store("k", entry("", &[], &[]));
        assert!(off.lookup("k", &Headers::default()).is_none());
        assert!(Cache::new(1, 1).enabled());
    }

    #[test]
    fn a_new_response_replaces_its_variant_and_its_bytes() {
        let cache = Cache::new(1 << 20, 1 << 20);
        let first = cache.store("k", entry("old", &[], &[])).size();
        let second = cache.store("k", entry("newer", &[], &[])).size();
        assert_eq!(
            cache.lookup("k", &Headers::default()).unwrap().body,
            "newer"
        );
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (1, second));
        assert_ne!(first, second);
    }

    #[test]
    fn an_uncacheable_uri_is_passed_until_something_is_stored() {
        let cache = Cache::new(1 << 20, 1 << 20);
        let none = Headers::default();
        assert!(!cache.lookup_or_pass("k", &none).pass);
        cache.mark_uncacheable("k");
        assert!(cache.lookup_or_pass("k", &none).pass, "within PASS_FOR");
        cache.store("k", entry("now it is", &[], &[]));
        let found = cache.lookup_or_pass("k", &none);
        assert!(found.entry.is_some() && !found.pass);
        cache.invalidate("k");
        assert!(
            !cache.lookup_or_pass("k", &none).pass,
            "storing forgot the mark"
        );
    }

    #[tokio::test]
    async fn one_leader_per_key_and_its_end_wakes_the_followers() {
        let cache = Cache::new(1 << 20, 1 << 20);
        let Some(Flight::Leader(guard)) = cache.join_flight("k") else {
            panic!("the first request leads");
        };
        let Some(Flight::Follower(mut waiting)) = cache.join_flight("k") else {
            panic!("the second one follows");
        };
        assert!(matches!(
            cache.join_flight("other"),
            Some(Flight::Leader(_))
        ));
        assert_eq!(cache.waiting("k"), 1);
        drop(guard);
        let woke =
            tokio::time::timeout(std::time::Duration::from_secs(10), waiting.changed()).await;
        assert!(
            matches!(woke, Ok(Err(_))),
            "the leader's end wakes the follower"
        );
        assert_eq!(cache.waiting("k"), 0);
        assert!(matches!(cache.join_flight("k"), Some(Flight::Leader(_))));
    }

    /// Polls `check` until it holds (the disk writes run on blocking threads).
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn files_follow_the_store_and_reload_within_the_object_limit() {
        let dir = tempfile::tempdir().unwrap();
        let files = || std::fs::read_dir(dir.path()).map_or(0, |d| d.count());
        let (cache, loaded) = Cache::new(1 << 20, 1 << 20)
            .with_dir(dir.path().to_path_buf())
            .unwrap();
        assert_eq!(loaded, 0);
        cache.store("a", entry("aaaa", &[], &[]));
        cache.store("b", entry(&"b".repeat(100), &[], &[]));
        eventually("two files written", || files() == 2).await;
        let (reloaded, loaded) = Cache::new(1 << 20, 100)
            .with_dir(dir.path().to_path_buf())
            .unwrap();
        assert_eq!(loaded, 2, "a body of exactly the limit is loaded");
        let (small, loaded) = Cache::new(1 << 20, 99)
            .with_dir(dir.path().to_path_buf())
            .unwrap();
        assert_eq!(loaded, 1, "a body over the limit is not");
        assert!(small.lookup("b", &Headers::default()).is_none());
        reloaded.invalidate("a");
        eventually("the invalidated entry's file removed", || files() == 1).await;
    }

    #[test]
    fn one_background_revalidation_per_key() {
        let cache = Cache::new(1 << 20, 1 << 20);
        assert!(cache.begin_refresh("a"));
        assert!(
            !cache.begin_refresh("a"),
            "a second one while the first runs"
        );
        assert!(cache.begin_refresh("b"), "another key is another matter");
        cache.end_refresh("a");
        assert!(cache.begin_refresh("a"), "after the first ended");
    }

    fn piece(range: &str, body: &'static [u8]) -> Partial {
        let mut head = ResponseHead::new(206, "Partial Content");
        head.headers.push("Cache-Control", "max-age=60");
        head.headers.push("ETag", "\"p\"");
        head.headers.push("Content-Range", range);
        let now = SystemTime::now();
        let times = (now, now);
        Partial::new(head, Bytes::from_static(body), times, &Targeting::default()).unwrap()
    }

    #[test]
    fn partials_become_whole_are_accounted_and_go_first() {
        let cache = Cache::new(1 << 20, 1 << 20);
        assert!(!cache.store_partial("k", piece("bytes 0-1/4", b"ab")));
        let held = cache.stats().bytes;
        assert!(held > 2, "a piece counts against the budget");
        assert!(cache.lookup("k", &Headers::default()).is_none());
        assert!(cache.store_partial("k", piece("bytes 2-3/4", b"cd")));
        let whole = cache.lookup("k", &Headers::default()).unwrap();
        assert_eq!((&whole.body[..], whole.head.status), (&b"abcd"[..], 200));
        assert!(
            cache.partial("k").is_none(),
            "the pieces made way for the whole"
        );
        assert_eq!(cache.stats().bytes, whole.size());
        // Over budget, pieces are evicted before whole responses.
        let small = Cache::new(whole.size() + 10, 1 << 20);
        small.store("k", entry("abcd", &[], &[]));
        small.store_partial("p", piece("bytes 0-1/4", b"ab"));
        assert!(small.partial("p").is_none());
        assert!(small.lookup("k", &Headers::default()).is_some());
        // Invalidation takes pieces too.
        cache.store_partial("q", piece("bytes 0-1/4", b"ab"));
        assert!(cache.invalidate("q"));
        assert!(cache.partial("q").is_none());
    }
}
