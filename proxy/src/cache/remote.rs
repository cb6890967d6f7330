//! The shared store (`--cache-store redis://HOST:PORT[/DB]`): replicas of the proxy keep
//! one cache between them in Redis, behind each one's in-memory cache.
//!
//! Takes: entries the in-memory cache stored, keys it missed, keys it invalidated. Returns:
//! entries another replica stored, and who fetches a miss when several replicas miss at
//! once. What lives in Redis (`P` is `proxylab:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P` `e:` URI | hash | one field per variant (the Vary values' hash), each an entry in the `--cache-dir` file format ([`super::disk`]); expires when the longest-lived variant is past use |
//! | `P` `l:` URI | string | the lock of the replica fetching the URI now (`SET NX PX`); expires by itself if that replica dies |
//! | channel `P` `events` | pub/sub | `stored URI`, `released URI`, `invalidate URI`, each prefixed with the sender's id |
//!
//! Redis down or slow never fails a request: every operation has a short deadline, and a
//! failed one marks the store down — requests then skip it (memory and the origin serve
//! them) until the supervisor task has reconnected. The state is logged once per change
//! and shown as `proxylab_cache_store_up` in `/metrics`.

use super::disk;
use super::entry::Entry;
use super::freshness::Targeting;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "proxylab:";
const CHANNEL: &str = "proxylab:events";
/// How long one Redis operation may take before the store is taken for down.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between reconnection attempts while Redis is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);
/// How long a stale entry with a validator is kept past its other windows, so a replica
/// can still revalidate it (a 304 is cheaper than the whole response again).
const REVALIDATE_FOR: Duration = Duration::from_secs(600);

/// The shared store's client: the connection, its state, and the replicas' lock waiters.
#[derive(Debug)]
pub struct Remote {
    client: redis::Client,
    /// The address as given, without a password, for log lines.
    shown: String,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// [`UNKNOWN`] until the first attempt to connect, then [`UP`] or [`DOWN`].
    state: AtomicU8,
    /// Counts failed operations: when it moves, the supervisor drops the connection and
    /// reconnects. (A counter watched from each connection's start, so a failure of the
    /// last connection does not end the next one.)
    broken: watch::Sender<u64>,
    /// This replica's name in lock tokens and events (its own events are not acted on).
    id: String,
    tokens: AtomicU64,
    /// How long a replica's fetch holds the others back at most (`--cache-store-lock`).
    lock_for: Duration,
    /// URIs whose lock another replica holds, and the requests here waiting for it.
    waiters: Mutex<HashMap<String, watch::Sender<()>>>,
    targeting: Targeting,
    /// Writes waiting for the writer task, and its end of the queue until it starts.
    writes: mpsc::Sender<Write>,
    queued: Mutex<Option<mpsc::Receiver<Write>>>,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// How many writes may wait for the store; more are dropped (the store is a cache).
const QUEUE: usize = 1024;

/// What asking for a URI's lock gave.
#[derive(Debug)]
pub enum Lock {
    /// This replica fetches; release the lock with [`Remote::unlock`] when done.
    Acquired(String),
    /// Another replica is fetching it: wait on the receiver (woken when it stored the
    /// response or gave up, or by the deadline of its lock), then look again.
    Held(watch::Receiver<()>, Duration),
    /// Another replica stored it just before: these are its variants (the lock was taken
    /// and is released again).
    Stored(Vec<Entry>),
    /// The store is down or slow: fetch without it.
    Unavailable,
}

impl Remote {
    /// A client for `url` (`redis://HOST:PORT[/DB]`); nothing is connected until
    /// [`Remote::start`].
    pub fn new(url: &str, lock_for: Duration, targeting: Targeting) -> Result<Remote, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--cache-store {url}: {e}"))?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}", info.addr());
        // Unique among replicas: the process, the moment, and a count for several stores
        // in one process (tests run replicas side by side).
        static STORES: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
            STORES.fetch_add(1, Ordering::Relaxed)
        );
        let (writes, queued) = mpsc::channel(QUEUE);
        Ok(Remote {
            writes,
            queued: Mutex::new(Some(queued)),
            client,
            shown,
            conn: Mutex::new(None),
            state: AtomicU8::new(UNKNOWN),
            broken: watch::channel(0).0,
            id,
            tokens: AtomicU64::new(0),
            lock_for,
            waiters: Mutex::new(HashMap::new()),
            targeting,
        })
    }

    /// Whether the store is connected now.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Starts the supervisor: it connects, listens to the other replicas' events (calling
    /// `invalidate` for their invalidations), and reconnects whenever the connection is
    /// lost. It ends when `owner` is gone.
    pub fn start<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        owner: Weak<T>,
        invalidate: impl Fn(&T, &str) + Send + Sync + 'static,
    ) {
        if let Some(mut queued) = self.queued.lock().ok().and_then(|mut q| q.take()) {
            // Holds the store weakly: the queue closes when the store is dropped.
            let store = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(write) = queued.recv().await {
                    let Some(store) = store.upgrade() else { break };
                    if let Some(mut conn) = store.conn() {
                        store
                            .run(write.pipeline().query_async::<()>(&mut conn))
                            .await;
                    }
                }
            });
        }
        let me = self.clone();
        tokio::spawn(async move {
            while owner.strong_count() > 0 {
                me.supervise_once(&owner, &invalidate).await;
                me.set_up(false, "the connection was lost");
                me.wake_all();
                tokio::time::sleep(RECONNECT_EVERY).await;
            }
        });
    }

    /// One connection's life: connect, subscribe, relay events until it breaks.
    async fn supervise_once<T>(&self, owner: &Weak<T>, invalidate: &impl Fn(&T, &str)) {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let conn = self.client.get_multiplexed_async_connection().await?;
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>((conn, pubsub))
        })
        .await;
        let (conn, pubsub) = match connected {
            Ok(Ok(both)) => both,
            Ok(Err(e)) => return self.set_up(false, &e.to_string()),
            Err(_) => return self.set_up(false, "connecting timed out"),
        };
        let mut broken = self.broken.subscribe();
        broken.borrow_and_update();
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(conn);
        }
        self.set_up(true, "");
        let mut events = pubsub.into_on_message();
        loop {
            use futures_util::StreamExt as _;
            tokio::select! {
                msg = events.next() => {
                    let Some(msg) = msg else { break };
                    let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
                        continue;
                    };
                    let Some(owner) = owner.upgrade() else { break };
                    self.on_event(text, |key| invalidate(&owner, key));
                }
                _ = broken.changed() => break,
            }
        }
        if let Ok(mut slot) = self.conn.lock() {
            *slot = None;
        }
    }

    /// Acts on one event of the channel: `ID KIND URI`.
    fn on_event(&self, text: &str, invalidate: impl FnOnce(&str)) {
        let mut parts = text.splitn(3, ' ');
        let (Some(from), Some(kind), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        if from == self.id {
            return;
        }
        match kind {
            "invalidate" => {
                tracing::debug!("cache store: {key} invalidated by another replica");
                invalidate(key);
                self.wake(key);
            }
            "stored" | "released" => self.wake(key),
            _ => {}
        }
    }

    /// Records the state; logs only a change (the first one too: a store that is down
    /// when the proxy starts is said so once).
    fn set_up(&self, up: bool, why: &str) {
        let state = if up { UP } else { DOWN };
        if self.state.swap(state, Ordering::Relaxed) != state {
            if up {
                tracing::info!("cache store {} connected", self.shown);
            } else {
                tracing::warn!(
                    "cache store {} unavailable ({why}); serving from memory and the origin until it is back",
                    self.shown
                );
            }
        }
    }

    /// The connection, when the store is up.
    fn conn(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.conn.lock().ok()?.clone()
    }

    /// Runs one operation with the deadline; a failure marks the store down.
    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.fail(&e.to_string());
                None
            }
            Err(_) => {
                self.fail(&format!("an operation took longer than {OP_TIMEOUT:?}"));
                None
            }
        }
    }

    fn fail(&self, why: &str) {
        self.set_up(false, why);
        if let Ok(mut slot) = self.conn.lock() {
            *slot = None;
        }
        self.broken.send_modify(|n| *n += 1);
    }

    /// Every stored variant of `key`, decoded; empty when there is none or the store is
    /// down. A value that does not decode is skipped.
    pub async fn fetch(&self, key: &str) -> Vec<Entry> {
        let Some(mut conn) = self.conn() else {
            return Vec::new();
        };
        let cmd = redis::cmd("HVALS").arg(entry_key(key)).clone();
        let values: Vec<Vec<u8>> = self
            .run(cmd.query_async(&mut conn))
            .await
            .unwrap_or_default();
        self.decode(key, &values)
    }

    /// The entries of `key` among stored values (one that does not decode is skipped).
    fn decode(&self, key: &str, values: &[Vec<u8>]) -> Vec<Entry> {
        values
            .iter()
            .filter_map(|v| match disk::decode(v, &self.targeting) {
                Ok((stored_key, entry)) if stored_key == key => Some(entry),
                Ok(_) => None,
                Err(why) => {
                    tracing::warn!("cache store: an entry for {key} skipped: {why}");
                    None
                }
            })
            .collect()
    }

    /// Writes `entry` for `key` and tells the other replicas (off the request's path).
    pub fn put(&self, key: &str, entry: &Entry) {
        // Stale with nothing to revalidate it by: no other replica could use it.
        let ttl = ttl(entry).as_secs();
        if ttl == 0 {
            return;
        }
        self.send(Write::Put {
            hash: entry_key(key),
            field: format!("{:016x}", disk::variant_hash(key, entry)),
            value: disk::encode(key, entry),
            ttl,
            event: format!("{} stored {key}", self.id),
        });
    }

    /// Deletes `key` from the store and tells the other replicas to drop their copies.
    pub fn remove(&self, key: &str) {
        self.send(Write::Remove {
            hash: entry_key(key),
            event: format!("{} invalidate {key}", self.id),
        });
    }

    /// Queues a write for the writer task; dropped (never waited for) when the store is
    /// down or the queue is full.
    fn send(&self, write: Write) {
        if !self.is_up() {
            return;
        }
        if self.writes.try_send(write).is_err() {
            tracing::debug!("cache store: write queue full; a write was dropped");
        }
    }

    /// Asks for the lock on `key`: the replica that gets it fetches, the others wait for
    /// it (request collapsing across replicas).
    pub async fn lock(&self, key: &str) -> Lock {
        let Some(mut conn) = self.conn() else {
            return Lock::Unavailable;
        };
        let token = format!(
            "{}-{}",
            self.id,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        // Registered before asking, so an event sent between the answer and the wait is
        // not missed.
        let waiting = self.waiter(key);
        let millis = self.lock_for.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(lock_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .cmd("PTTL")
            .arg(lock_key(key))
            // Looked at after the lock is ours: a replica that stored the response and
            // released the lock just before (between this replica's miss and now) wrote
            // the response first, so it is seen here.
            .cmd("HVALS")
            .arg(entry_key(key));
        let answer = pipe.query_async::<(Option<String>, i64, Vec<Vec<u8>>)>(&mut conn);
        match self.run(answer).await {
            Some((Some(_), _, stored)) => {
                self.forget_waiter(key);
                let stored = self.decode(key, &stored);
                if stored.is_empty() {
                    return Lock::Acquired(token);
                }
                self.unlock(key, token);
                Lock::Stored(stored)
            }
            Some((None, left, _)) => {
                let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                Lock::Held(waiting, left.min(self.lock_for))
            }
            None => {
                self.forget_waiter(key);
                Lock::Unavailable
            }
        }
    }

    /// Releases the lock on `key` if it is still this token's, and tells the waiters.
    /// Queued behind this replica's earlier writes, so a waiter woken by it finds the
    /// response stored.
    pub fn unlock(&self, key: &str, token: String) {
        self.send(Write::Unlock {
            lock: lock_key(key),
            token,
            event: format!("{} released {key}", self.id),
        });
    }

    /// How many requests here wait for another replica's fetch of `key`.
    pub fn waiting(&self, key: &str) -> usize {
        self.waiters
            .lock()
            .ok()
            .and_then(|w| w.get(key).map(|s| s.receiver_count()))
            .unwrap_or(0)
    }

    fn waiter(&self, key: &str) -> watch::Receiver<()> {
        match self.waiters.lock() {
            Ok(mut waiters) => waiters
                .entry(key.to_string())
                .or_insert_with(|| watch::channel(()).0)
                .subscribe(),
            // Never woken by an event: the lock's deadline ends the wait.
            Err(_) => watch::channel(()).1,
        }
    }

    fn forget_waiter(&self, key: &str) {
        if let Ok(mut waiters) = self.waiters.lock() {
            if waiters.get(key).is_some_and(|w| w.receiver_count() <= 1) {
                waiters.remove(key);
            }
        }
    }

    fn wake(&self, key: &str) {
        if let Some(sender) = self.waiters.lock().ok().and_then(|mut w| w.remove(key)) {
            sender.send_replace(());
        }
    }

    fn wake_all(&self) {
        if let Ok(mut waiters) = self.waiters.lock() {
            for (_, sender) in waiters.drain() {
                sender.send_replace(());
            }
        }
    }
}

/// A write to the store. One task makes them, in the order they were queued: a lock is
/// released only after the response it guarded was written.
#[derive(Debug)]
enum Write {
    Put {
        hash: String,
        field: String,
        value: Vec<u8>,
        ttl: u64,
        event: String,
    },
    Remove {
        hash: String,
        event: String,
    },
    Unlock {
        lock: String,
        token: String,
        event: String,
    },
}

impl Write {
    fn pipeline(self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let event = match self {
            Write::Put {
                hash,
                field,
                value,
                ttl,
                event,
            } => {
                pipe.atomic()
                    .cmd("HSET")
                    .arg(&hash)
                    .arg(field)
                    .arg(value)
                    .ignore()
                    .cmd("EVAL")
                    .arg(EXTEND)
                    .arg(1)
                    .arg(&hash)
                    .arg(ttl)
                    .ignore();
                event
            }
            Write::Remove { hash, event } => {
                pipe.cmd("DEL").arg(hash).ignore();
                event
            }
            Write::Unlock { lock, token, event } => {
                pipe.cmd("EVAL")
                    .arg(UNLOCK)
                    .arg(1)
                    .arg(lock)
                    .arg(token)
                    .ignore();
                event
            }
        };
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(event).ignore();
        pipe
    }
}

/// Gives the hash this TTL unless it has a longer one already: it lives as long as its
/// longest-lived variant. (`EXPIRE … GT` would need Redis 7; this runs on any.)
const EXTEND: &str = "if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then return redis.call('EXPIRE', KEYS[1], ARGV[1]) else return 0 end";

/// Deletes the lock only if it still holds the releasing replica's token: a lock that
/// expired and was taken by another replica is not theirs to delete.
const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

fn entry_key(key: &str) -> String {
    format!("{PREFIX}e:{key}")
}

fn lock_key(key: &str) -> String {
    format!("{PREFIX}l:{key}")
}

/// How long the store keeps `entry`: what is left of its freshness, plus the windows in
/// which a stale copy may still serve (stale-while-revalidate, stale-if-error), plus
/// [`REVALIDATE_FOR`] when it has a validator; whole seconds.
pub fn ttl(entry: &Entry) -> Duration {
    let now = std::time::SystemTime::now();
    let left = entry.facts.lifetime.saturating_sub(entry.age(now));
    let cc = &entry.facts.cache_control;
    let stale = cc
        .stale_while_revalidate
        .max(cc.stale_if_error)
        .unwrap_or(0);
    let validator = entry.etag().is_some() || entry.head.headers.contains("last-modified");
    let keep = left
        + Duration::from_secs(stale)
        + if validator {
            REVALIDATE_FOR
        } else {
            Duration::ZERO
        };
    // Whole seconds, rounded up: what is left of a 60 s lifetime is 60 s, not 59.99.
    Duration::from_secs(keep.as_millis().div_ceil(1000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::wire::{Headers, ResponseHead, Version};
    use std::time::SystemTime;

    fn entry(fields: &[(&'static str, &'static str)]) -> Entry {
        let mut head = ResponseHead {
            version: Version::Http11,
            status: 200,
            reason: "OK".into(),
            headers: Headers::default(),
        };
        for (name, value) in fields {
            head.headers.push(*name, *value);
        }
        let now = SystemTime::now();
        let none = Headers::default();
        Entry::new(
            head,
            Default::default(),
            &none,
            (now, now),
            &Targeting::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_store_keeps_an_entry_while_it_can_serve_or_be_revalidated() {
        let secs = |fields: &[(&'static str, &'static str)]| ttl(&entry(fields)).as_secs();
        assert_eq!(secs(&[("Cache-Control", "max-age=60")]), 60);
        assert_eq!(
            secs(&[("Cache-Control", "max-age=60"), ("ETag", "\"a\"")]),
            660
        );
        const WINDOWS: &str = "max-age=60, stale-while-revalidate=30, stale-if-error=300";
        assert_eq!(secs(&[("Cache-Control", WINDOWS)]), 360);
        assert_eq!(secs(&[("Cache-Control", "max-age=0")]), 0);
    }

    #[test]
    fn events_of_other_replicas_are_acted_on_and_own_ones_are_not() {
        let remote = Remote::new(
            "redis://127.0.0.1:1",
            Duration::from_secs(1),
            Targeting::default(),
        )
        .unwrap();
        let waiting = remote.waiter("http://h:80/x");
        let mut dropped = Vec::new();
        let own = format!("{} invalidate http://h:80/x", remote.id);
        remote.on_event(&own, |k| dropped.push(k.to_string()));
        assert!(dropped.is_empty());
        assert!(!waiting.has_changed().unwrap());
        remote.on_event("other invalidate http://h:80/x", |k| {
            dropped.push(k.to_string())
        });
        assert_eq!(dropped, ["http://h:80/x"]);
        assert!(waiting.has_changed().unwrap_or(true));
        remote.on_event("garbage", |_| panic!("not an event"));
    }
}
