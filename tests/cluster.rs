//! Past one machine: replicas that share one cache through a real `redis-server`
//! (`--cache-store`), proven by what the origin saw (`X-Origin-Hits`), and parent proxies
//! (`--parent`).

use crate::support::{
    admin_get, authority, eventually, eventually_async, Client, Response, DEADLINE,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// A `redis-server` of its own on a free loopback port, stopped when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Redis { child: None, port };
        redis.restart();
        redis
    }

    /// Starts it again on the same port (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be on PATH for these tests \
                 (apt-get install redis-server; .ci/run installs it)",
            );
        // Ready when it says so (never a fixed sleep).
        let stdout = child.stdout.take().expect("stdout");
        let (ready, said) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(());
                }
            }
        });
        said.recv_timeout(DEADLINE)
            .expect("redis-server did not say it was ready");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends it a signal (`STOP` makes it slow: alive, answering nothing; `CONT` resumes).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Whether the store holds an entry for `key`, asked with a client of the test's own.
    pub async fn has_entry(&self, key: &str) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("EXISTS")
            .arg(format!("proxylab:e:{key}"))
            .query_async::<i64>(&mut conn)
            .await
            .is_ok_and(|n| n == 1)
    }

    /// The seconds `key`'s entry has left in the store.
    pub async fn ttl(&self, key: &str) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("TTL")
            .arg(format!("proxylab:e:{key}"))
            .query_async::<i64>(&mut conn)
            .await
            .unwrap()
    }

    /// Runs one command, for a test that plays another replica.
    pub async fn command(&self, args: &[&str]) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async::<redis::Value>(&mut conn).await.unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One origin-sim, a redis-server, and replicas of the proxy sharing the cache through it.
struct Cluster {
    origin: origin_sim::Handle,
    redis: Redis,
    replicas: Vec<proxy::Handle>,
}

impl Cluster {
    async fn start(replicas: usize) -> Cluster {
        Cluster::start_with(replicas, |_| {}).await
    }

    /// Replicas whose configuration `tweak` changes.
    async fn start_with(replicas: usize, tweak: impl Fn(&mut proxy::Config)) -> Cluster {
        let redis = Redis::start();
        let origin = origin_sim::start(origin_sim::Config::default())
            .await
            .expect("origin");
        let mut cluster = Cluster {
            origin,
            redis,
            replicas: Vec::new(),
        };
        for _ in 0..replicas {
            let replica = cluster.replica(&tweak).await;
            cluster.replicas.push(replica);
        }
        cluster
    }

    /// A replica on the cluster's store, connected to it before it is returned.
    async fn replica(&self, tweak: impl Fn(&mut proxy::Config)) -> proxy::Handle {
        let mut config = proxy::Config::for_tests();
        tweak(&mut config);
        config.cache_store = Some(self.redis.url());
        let replica = proxy::start(config).await.expect("proxy");
        let remote = replica.shared().cache.remote().unwrap().clone();
        eventually("the replica to connect to redis", || remote.is_up()).await;
        replica
    }

    fn key(&self, path: &str) -> String {
        format!("http://{}{path}", self.origin.addr())
    }

    fn hits(&self, path: &str) -> u64 {
        self.origin.origin().hits(path)
    }

    async fn get(&self, replica: usize, path: &str) -> Response {
        let url = format!("{}{path}", self.origin.url());
        crate::support::get(&self.replicas[replica], &url).await
    }

    /// `method` of `path` through a replica, with these header fields besides `Host`.
    async fn send(
        &self,
        replica: usize,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let url = format!("{}{path}", self.origin.url());
        let mut head = format!(
            "{method} {url} HTTP/1.1\r\nHost: {}\r\n",
            self.origin.addr()
        );
        for (name, value) in fields {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut client = Client::connect(self.replicas[replica].addr()).await;
        client.send(head + "\r\n").await;
        client.read(method).await
    }

    async fn stored(&self, path: &str) {
        let key = self.key(path);
        eventually_async("the entry to reach redis", || self.redis.has_entry(&key)).await;
    }

    fn remote(&self, replica: usize) -> &Arc<proxy::cache::remote::Remote> {
        self.replicas[replica].shared().cache.remote().unwrap()
    }
}

fn cache_status(res: &Response) -> String {
    res.header("cache-status").unwrap_or_default()
}

#[tokio::test]
async fn a_response_one_replica_fetched_is_a_hit_on_another() {
    let cluster = Cluster::start(2).await;
    let first = cluster.get(0, "/cache/60").await;
    assert_eq!(first.header("x-origin-hits").as_deref(), Some("1"));
    cluster.stored("/cache/60").await;
    // Kept for its 60 s of freshness and 600 s more to be revalidated (it has an ETag).
    let ttl = cluster.redis.ttl(&cluster.key("/cache/60")).await;
    assert!((600..=660).contains(&ttl), "TTL {ttl}");

    let second = cluster.get(1, "/cache/60").await;
    assert_eq!(second.head.status, 200);
    assert_eq!(cache_status(&second), "proxylab; hit; detail=shared-store");
    assert_eq!(second.text(), first.text());
    assert_eq!(second.header("x-origin-hits").as_deref(), Some("1"));
    assert_eq!(cluster.hits("/cache/60"), 1, "the origin was asked once");
    // Now in the second replica's memory too: a plain hit, still one origin fetch.
    let third = cluster.get(1, "/cache/60").await;
    assert_eq!(cache_status(&third), "proxylab; hit");
    assert_eq!(cluster.hits("/cache/60"), 1);
}

#[tokio::test]
async fn only_what_may_be_stored_is_shared_and_variants_stay_apart() {
    let cluster = Cluster::start(2).await;
    for replica in 0..2 {
        cluster.get(replica, "/nostore").await;
        cluster.get(replica, "/private").await;
    }
    assert_eq!(cluster.hits("/nostore"), 2);
    assert_eq!(cluster.hits("/private"), 2);
    // Writes leave a replica in order: once a later one is there, earlier ones would be.
    cluster.get(0, "/cache/60").await;
    cluster.stored("/cache/60").await;
    assert!(!cluster.redis.has_entry(&cluster.key("/nostore")).await);
    assert!(!cluster.redis.has_entry(&cluster.key("/private")).await);

    let lang = |replica: usize, value: &'static str| {
        let fields = [("Accept-Language", value)];
        let cluster = &cluster;
        async move {
            let path = "/vary/Accept-Language";
            cluster.send(replica, "GET", path, &fields).await
        }
    };
    let en = lang(0, "en").await;
    cluster.stored("/vary/Accept-Language").await;
    let en_again = lang(1, "en").await;
    assert_eq!(
        cache_status(&en_again),
        "proxylab; hit; detail=shared-store"
    );
    assert_eq!(en_again.text(), en.text());
    let fr = lang(1, "fr").await;
    assert!(cache_status(&fr).contains("fwd="), "{}", cache_status(&fr));
    assert!(fr.text().contains("fr"), "{}", fr.text());
    assert_eq!(cluster.hits("/vary/Accept-Language"), 2);
}

#[tokio::test]
async fn a_body_over_the_object_limit_never_goes_to_the_store() {
    let cluster = Cluster::start_with(2, |c| c.cache_max_object = 1000).await;
    for replica in 0..2 {
        cluster.get(replica, "/cache/60?bytes=1001").await;
        cluster.get(replica, "/cache/60?bytes=1000").await;
        // Writes leave a replica in order: the larger one would be there first.
        cluster.stored("/cache/60?bytes=1000").await;
    }
    assert_eq!(
        cluster.hits("/cache/60?bytes=1001"),
        2,
        "each replica fetched it"
    );
    assert_eq!(cluster.hits("/cache/60?bytes=1000"), 1, "shared");
    assert!(
        !cluster
            .redis
            .has_entry(&cluster.key("/cache/60?bytes=1001"))
            .await
    );
}

#[tokio::test]
async fn purge_and_unsafe_methods_on_one_replica_reach_every_replica() {
    let cluster = Cluster::start(3).await;
    for path in ["/cache/60", "/cache/61"] {
        cluster.get(0, path).await;
        cluster.stored(path).await;
        // Every replica holds it in memory now.
        for replica in 1..3 {
            let res = cluster.get(replica, path).await;
            assert!(cache_status(&res).starts_with("proxylab; hit"));
        }
        assert_eq!(cluster.hits(path), 1);
    }

    let empty = [("Content-Length", "0")];
    let purged = cluster.send(1, "PURGE", "/cache/60", &empty).await;
    assert_eq!(purged.head.status, 200, "{}", purged.text());
    // A POST that succeeds invalidates the URI it was sent to (RFC 9111 §4.4).
    let posted = cluster.send(2, "POST", "/cache/61", &empty).await;
    assert!(posted.head.status < 400, "{}", posted.text());
    for replica in 0..3 {
        let cache = &cluster.replicas[replica].shared().cache;
        eventually("every replica to drop both entries", || {
            cache.stats().entries == 0
        })
        .await;
    }
    assert!(!cluster.redis.has_entry(&cluster.key("/cache/60")).await);
    assert!(!cluster.redis.has_entry(&cluster.key("/cache/61")).await);
    let again = cluster.get(0, "/cache/60").await;
    assert_eq!(cache_status(&again), "proxylab; fwd=uri-miss; stored");
    assert_eq!(cluster.hits("/cache/60"), 2);
}

#[tokio::test]
async fn concurrent_misses_on_several_replicas_make_one_origin_request() {
    let cluster = Arc::new(Cluster::start(3).await);
    let path = "/gate/cluster";
    let key = cluster.key(path);
    let fetch = |replica: usize| {
        let cluster = cluster.clone();
        tokio::spawn(async move { cluster.get(replica, path).await })
    };
    let leader = fetch(0);
    eventually("the first request to reach the origin", || {
        cluster.hits(path) == 1
    })
    .await;
    let mut others = Vec::new();
    for replica in [1, 2, 1, 2] {
        others.push(fetch(replica));
    }
    // Each other replica has one request waiting for the lock, and one more waiting
    // behind it in its own memory.
    for replica in 1..3 {
        let remote = cluster.remote(replica).clone();
        let cache = &cluster.replicas[replica].shared().cache;
        eventually("requests on the other replicas to wait", || {
            remote.waiting(&key) == 1 && cache.waiting(&key) == 1
        })
        .await;
    }
    cluster.origin.origin().open_gate("cluster");
    assert_eq!(leader.await.unwrap().text(), "gate cluster opened\n");
    for other in others {
        let res = other.await.unwrap();
        assert_eq!(res.text(), "gate cluster opened\n");
        assert_eq!(cache_status(&res), "proxylab; hit; collapsed");
    }
    assert_eq!(
        cluster.hits(path),
        1,
        "one origin request for the whole cluster"
    );
}

#[tokio::test]
async fn a_replica_that_dies_holding_the_lock_holds_the_others_only_until_it_expires() {
    let cluster = Arc::new(Cluster::start(1).await);
    let path = "/cache/60";
    let key = cluster.key(path);
    // Another replica took the lock and died: nobody will release it; it expires.
    let lock = format!("proxylab:l:{key}");
    cluster
        .redis
        .command(&["SET", &lock, "dead-replica", "PX", "2000"])
        .await;
    let request = {
        let cluster = cluster.clone();
        tokio::spawn(async move { cluster.get(0, path).await })
    };
    let remote = cluster.remote(0).clone();
    eventually("the request to wait for the dead replica's lock", || {
        remote.waiting(&key) == 1
    })
    .await;
    assert_eq!(cluster.hits(path), 0);
    let res = request.await.unwrap();
    assert_eq!(res.head.status, 200);
    assert_eq!(res.header("x-origin-hits").as_deref(), Some("1"));
    assert_eq!(cache_status(&res), "proxylab; fwd=uri-miss; stored");
}

#[tokio::test]
async fn redis_slow_or_killed_fails_no_request_and_is_reconnected() {
    let admin = |c: &mut proxy::Config| c.admin = Some("127.0.0.1:0".parse().unwrap());
    let mut cluster = Cluster::start_with(1, admin).await;
    let remote = cluster.remote(0).clone();
    let admin = cluster.replicas[0].admin_addr().unwrap();
    let store_up = || async move {
        let text = admin_get(admin, "/metrics").await.text();
        let line = text
            .lines()
            .find(|l| l.starts_with("proxylab_cache_store_up "));
        line.map(|l| l.ends_with(" 1"))
    };
    assert_eq!(store_up().await, Some(true));
    let ok = |res: &Response| assert_eq!(res.head.status, 200, "{}", res.text());
    ok(&cluster.get(0, "/cache/60").await);
    cluster.stored("/cache/60").await;

    // Slow: alive but answering nothing. A miss waits for the store at most briefly.
    cluster.redis.signal("STOP");
    ok(&cluster.get(0, "/cache/61").await);
    eventually("the store to be taken for down", || !remote.is_up()).await;
    ok(&cluster.get(0, "/cache/62").await);
    ok(&cluster.get(0, "/cache/60").await);
    cluster.redis.signal("CONT");
    eventually("the store to be back", || remote.is_up()).await;

    // Killed: every request still answered, from memory or the origin.
    cluster.redis.kill();
    for path in ["/cache/60", "/cache/63", "/cache/64", "/cache/60"] {
        ok(&cluster.get(0, path).await);
    }
    eventually("the store to be taken for down", || !remote.is_up()).await;
    assert_eq!(cluster.hits("/cache/60"), 1, "memory served it meanwhile");
    assert_eq!(store_up().await, Some(false), "/metrics says so");

    // Back on the same port: the replica reconnects by itself and writes again.
    cluster.redis.restart();
    eventually("the replica to reconnect", || remote.is_up()).await;
    ok(&cluster.get(0, "/cache/65").await);
    cluster.stored("/cache/65").await;
}

/// A proxy on `listen`'s port with `tweak`ed configuration, run until the test ends.
async fn proxy_on(listen: tokio::net::TcpListener, tweak: impl FnOnce(&mut proxy::Config)) {
    let mut config = proxy::Config::for_tests();
    tweak(&mut config);
    let addr = listen.local_addr().unwrap();
    let shared = proxy::shared::Shared::new(config, addr).unwrap();
    tokio::spawn(proxy::run(listen, shared, std::future::pending()));
}

#[tokio::test]
async fn each_url_lives_on_one_parent_and_a_dead_parents_urls_move_alone() {
    let origin = origin_sim::start(origin_sim::Config::default())
        .await
        .expect("origin");
    let mut parents = Vec::new();
    for i in 0..3 {
        let mut config = proxy::Config::for_tests();
        config.via_name = format!("parent-{i}");
        parents.push(Some(proxy::start(config).await.expect("parent")));
    }
    // The child keeps nothing itself: every request shows where it went.
    let mut config = proxy::Config::for_tests();
    config.via_name = "child".into();
    config.cache_size = 0;
    let addrs: Vec<_> = parents.iter().flatten().map(|p| p.addr()).collect();
    config.parents = addrs.iter().map(|a| authority(*a)).collect();
    let child = proxy::start(config).await.expect("child");

    let paths: Vec<String> = (0..24).map(|i| format!("/cache/{}", 1000 + i)).collect();
    let key = |path: &str| format!("http://{}{path}", origin.addr());
    let holder = |parents: &[Option<proxy::Handle>], path: &str| {
        let holders: Vec<usize> = (0..3)
            .filter(|&i| {
                parents[i].as_ref().is_some_and(|p| {
                    let cache = &p.shared().cache;
                    cache.lookup(&key(path), &Default::default()).is_some()
                })
            })
            .collect();
        assert_eq!(holders.len(), 1, "{path} is on one parent: {holders:?}");
        holders[0]
    };
    let fetch = |path: String| {
        let url = format!("{}{path}", origin.url());
        let child = &child;
        async move { crate::support::get(child, &url).await }
    };
    let mut home = Vec::new();
    for path in &paths {
        let res = fetch(path.clone()).await;
        assert_eq!(res.head.status, 200, "{}", res.text());
        let via = res.header("via").unwrap_or_default();
        assert!(via.contains("parent-") && via.ends_with("child"), "{via}");
        let chosen = &child.shared().parents.as_ref().unwrap().order(&key(path))[0];
        let on = holder(&parents, path);
        assert_eq!(&authority(addrs[on]), chosen, "{path}");
        home.push(on);
    }
    // The same parent every time: a second round is all parent hits.
    for path in &paths {
        let res = fetch(path.clone()).await;
        assert!(res
            .header("cache-status")
            .unwrap_or_default()
            .contains("hit"));
        assert_eq!(origin.origin().hits(path), 1, "{path}");
    }

    // The parent with the most URLs dies; only its URLs move, each to one other parent.
    let dead = (0..3)
        .max_by_key(|&i| home.iter().filter(|&&h| h == i).count())
        .unwrap();
    parents[dead].take().unwrap().shutdown().await.unwrap();
    for (path, &was) in paths.iter().zip(&home) {
        let res = fetch(path.clone()).await;
        assert_eq!(res.head.status, 200, "{}", res.text());
        if was == dead {
            assert_eq!(
                origin.origin().hits(path),
                2,
                "{path} moved and was fetched again"
            );
            assert_ne!(holder(&parents, path), dead);
        } else {
            assert_eq!(
                origin.origin().hits(path),
                1,
                "{path} stayed on parent {was}"
            );
        }
    }
}

#[tokio::test]
async fn parents_that_name_each_other_are_a_loop_that_is_caught() {
    let origin = origin_sim::start(origin_sim::Config::default())
        .await
        .expect("origin");
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    proxy_on(a, |c| {
        c.via_name = "a".into();
        c.parents = vec![authority(b_addr)];
    })
    .await;
    proxy_on(b, |c| {
        c.via_name = "b".into();
        c.parents = vec![authority(a_addr)];
    })
    .await;
    let mut client = Client::connect(a_addr).await;
    let res = client.get(&format!("{}/cache/60", origin.url())).await;
    assert_eq!(res.head.status, 508, "{}", res.text());
    assert_eq!(res.header("via").as_deref(), Some("1.1 a, 1.1 b, 1.1 a"));
    assert_eq!(origin.origin().hits("/cache/60"), 0);
}

#[tokio::test]
async fn a_load_across_three_replicas_fetches_each_object_once() {
    let cluster = Cluster::start(3).await;
    let options = client::load::LoadOptions {
        url: format!("{}/etag/load-{{i}}?max-age=600", cluster.origin.url()),
        proxies: cluster
            .replicas
            .iter()
            .map(|r| r.addr().to_string())
            .collect(),
        clients: 9,
        budget: client::load::Budget::Requests(900),
        objects: 10,
        progress: false,
    };
    let report = client::load::load(options).await.unwrap();
    assert_eq!(report.requests, 900);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for i in 0..10 {
        let target = format!("/etag/load-{i}?max-age=600");
        assert_eq!(cluster.hits(&target), 1, "{target}");
    }
}
