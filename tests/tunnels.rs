//! CONNECT tunnels: bytes both ways exact, TLS end to end, the port policy, loops, and
//! half-close. The far end is origin-sim's echo server or its HTTPS listener.

use crate::support::{Client, DEADLINE};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use proxy::config::PortPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// origin-sim with every listener, and a proxy that allows CONNECT to any port.
pub struct TunnelBench {
    pub origin: origin_sim::Handle,
    pub proxy: proxy::Handle,
}

impl TunnelBench {
    pub async fn start() -> TunnelBench {
        TunnelBench::with(|c| c.connect_ports = PortPolicy::Any).await
    }

    pub async fn with(tweak: impl FnOnce(&mut proxy::Config)) -> TunnelBench {
        let origin = origin_sim::start(origin_sim::Config::all_on_loopback())
            .await
            .unwrap();
        let mut config = proxy::Config::for_tests();
        tweak(&mut config);
        let proxy = proxy::start(config).await.unwrap();
        TunnelBench { origin, proxy }
    }

    pub fn proxy_addr(&self) -> String {
        self.proxy.addr().to_string()
    }

    pub async fn stop(self) {
        self.proxy.shutdown().await.unwrap();
        self.origin.shutdown().await;
    }
}

/// Sends `data` through a tunnel to the echo server, closes the sending side, and returns
/// what came back.
async fn echo_through(bench: &TunnelBench, data: &[u8]) -> Vec<u8> {
    let echo = bench.origin.echo_addr().unwrap().to_string();
    tokio::time::timeout(
        DEADLINE,
        client::echo(&echo, Some(&bench.proxy_addr()), data),
    )
    .await
    .expect("echo within the deadline")
    .expect("echo through the tunnel")
}

/// Any bytes, any size, come back exactly through the tunnel.
#[test]
fn tunnel_is_byte_exact_both_ways() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = rt.block_on(TunnelBench::start());
    let mut runner = TestRunner::new(PropConfig {
        cases: 32,
        ..PropConfig::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..400_000), |data| {
            let back = rt.block_on(echo_through(&bench, &data));
            prop_assert!(
                back == data,
                "{} bytes sent, {} came back",
                data.len(),
                back.len()
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(bench.stop());
}

/// The client's FIN ends only its own direction: a megabyte still flowing back from the
/// server arrives whole after the client has finished sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_keeps_the_other_direction_open() {
    let bench = TunnelBench::start().await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let back = echo_through(&bench, &data).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    bench.stop().await;
}

/// A real TLS handshake with origin-sim's HTTPS listener through the tunnel, verified
/// against the CA it generated; a client trusting another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_the_tunnel_is_verified_end_to_end() {
    let bench = TunnelBench::start().await;
    let tls_addr = bench.origin.tls_addr().unwrap();
    let trusted =
        client::net::tls_config_from_pem(bench.origin.ca_pem().unwrap().as_bytes(), "test")
            .unwrap();
    let stream = client::net::connect(&tls_addr.to_string(), Some(&bench.proxy_addr()))
        .await
        .unwrap();
    let mut tls = client::net::tls(stream, "localhost", trusted)
        .await
        .unwrap();
    tls.write_all(b"GET /bytes/1000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await; // the server may close without close_notify
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(response.ends_with(&origin_sim::seeded_body(origin_sim::DEFAULT_SEED, 1000)));

    let other = origin_sim::Tls::generate().unwrap();
    let untrusted = client::net::tls_config_from_pem(other.ca_pem.as_bytes(), "other").unwrap();
    let stream = client::net::connect(&tls_addr.to_string(), Some(&bench.proxy_addr()))
        .await
        .unwrap();
    let refused = client::net::tls(stream, "localhost", untrusted).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA must not verify"
    );
    bench.stop().await;
}

async fn connect_status(bench: &TunnelBench, target: &str) -> crate::support::Response {
    let mut client = Client::connect(bench.proxy.addr()).await;
    client
        .send(format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        ))
        .await;
    client.read("CONNECT").await
}

/// Only --connect-ports may be tunnelled to (default 443): others are 403 with the reason.
#[tokio::test]
async fn connect_to_a_port_outside_the_policy_is_403() {
    let bench = TunnelBench::with(|_| {}).await;
    let echo = bench.origin.echo_addr().unwrap();
    let res = connect_status(&bench, &echo.to_string()).await;
    assert_eq!(res.head.status, 403);
    assert!(
        res.text().contains(&format!(
            "CONNECT to port {} is not allowed (allowed: 443)",
            echo.port()
        )),
        "{}",
        res.text()
    );
    bench.stop().await;

    let bench = TunnelBench::with(|c| c.connect_ports = PortPolicy::parse("1-1023").unwrap()).await;
    let res = connect_status(&bench, &echo.to_string()).await;
    assert_eq!(res.head.status, 403);
    bench.stop().await;
}

#[tokio::test]
async fn connect_to_an_unreachable_server_is_502() {
    let bench = TunnelBench::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let res = connect_status(&bench, &format!("127.0.0.1:{port}")).await;
    assert_eq!(res.head.status, 502);
    assert!(res.text().contains("could not connect"), "{}", res.text());
    bench.stop().await;
}

/// A tunnel to the proxy's own address would loop: refused with 508, by IP or by name.
#[tokio::test]
async fn connect_to_the_proxy_itself_is_refused() {
    let bench = TunnelBench::start().await;
    let own = bench.proxy.addr();
    for target in [own.to_string(), format!("localhost:{}", own.port())] {
        let res = connect_status(&bench, &target).await;
        assert_eq!(res.head.status, 508, "{target}: {}", res.text());
        assert!(
            res.text().contains("the proxy's own address"),
            "{}",
            res.text()
        );
    }
    bench.stop().await;
}

/// Authority-form parsing: IPv6 literals work, a missing port is 400.
#[tokio::test]
async fn connect_targets_are_parsed_strictly() {
    let bench = TunnelBench::start().await;
    let res = connect_status(&bench, "127.0.0.1").await;
    assert_eq!(res.head.status, 400);
    // [::1] with a port nobody listens on: parsed, dialled, refused.
    let port = std::net::TcpListener::bind("[::1]:0").map(|l| l.local_addr().unwrap().port());
    if let Ok(port) = port {
        let res = connect_status(&bench, &format!("[::1]:{port}")).await;
        assert_eq!(res.head.status, 502, "{}", res.text());
    }
    bench.stop().await;
}

/// A tunnel that carries nothing either way for --tunnel-idle-timeout is closed by the
/// proxy (the client sees the end of the stream), and the proxy keeps serving.
#[tokio::test]
async fn idle_tunnel_is_closed() {
    let bench = TunnelBench::with(|c| {
        c.connect_ports = PortPolicy::Any;
        c.tunnel_idle_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let echo = bench.origin.echo_addr().unwrap().to_string();
    let mut stream = client::net::connect(&echo, Some(&bench.proxy_addr()))
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping", "the tunnel works while used");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(ended, Ok(Ok(0))),
        "the idle tunnel was closed: {ended:?}"
    );
    assert_eq!(
        echo_through(&bench, b"still serving").await,
        b"still serving"
    );
    bench.stop().await;
}

/// A port named in --connect-ports is allowed, alone or as either end of a range; the
/// ports just outside a range are not. (A range made exclusive refuses the port it names.)
#[tokio::test]
async fn connect_ports_include_the_ports_they_name() {
    let origin = origin_sim::start(origin_sim::Config::all_on_loopback())
        .await
        .unwrap();
    let echo = origin.echo_addr().unwrap();
    let port = echo.port();
    for (policy, allowed) in [
        (format!("{port}"), true),
        (format!("{port}-{}", port + 1), true),
        (format!("{}-{port}", port - 1), true),
        (format!("443,{}-{}", port + 1, port + 2), false),
        (format!("{}-{}", port - 2, port - 1), false),
    ] {
        let mut config = proxy::Config::for_tests();
        config.connect_ports = PortPolicy::parse(&policy).unwrap();
        let proxy = proxy::start(config).await.unwrap();
        let mut client = Client::connect(proxy.addr()).await;
        client
            .send(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n"))
            .await;
        // The head only: a 200 opens the tunnel, which has no end to read to.
        let head = tokio::time::timeout(
            DEADLINE,
            client
                .reader
                .read_response_head(proxy::http::wire::Limits::default(), None),
        )
        .await
        .expect("an answer to CONNECT")
        .unwrap();
        let expected = if allowed { 200 } else { 403 };
        assert_eq!(
            head.status, expected,
            "--connect-ports {policy}, CONNECT {echo}"
        );
        drop(client);
        proxy.shutdown().await.unwrap();
    }
    origin.shutdown().await;
}
