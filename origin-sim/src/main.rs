//! The `origin-sim` binary: parse the command line, print the listening line, serve.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A deterministic simulated origin server for proxylab: the same bytes every run,
/// offline, on loopback, with faults on demand.
///
/// Every response carries X-Origin-Hits (requests this path and query have received) and
/// X-Origin-Conn (which TCP connection served it, counting from 1).
#[derive(Debug, Parser)]
#[command(name = "origin-sim", version, about, long_about)]
struct Cli {
    /// Address for the HTTP listener; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "IP:PORT")]
    http: SocketAddr,

    /// Also serve the same routes over HTTPS here, with a certificate for localhost,
    /// 127.0.0.1 and ::1 from a CA generated at start (see --ca-out).
    #[arg(long, value_name = "IP:PORT")]
    tls: Option<SocketAddr>,

    /// Where to write the generated CA certificate (PEM), for `curl --cacert FILE`.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        default_value = "origin-sim-ca.pem"
    )]
    ca_out: PathBuf,

    /// Also run a TCP echo server here (bytes in, the same bytes out).
    #[arg(long, value_name = "IP:PORT")]
    echo: Option<SocketAddr>,

    /// Also run the chat room here (line based; /name NAME, /who, !DISCONNECT or /quit).
    #[arg(long, value_name = "IP:PORT")]
    chat: Option<SocketAddr>,

    /// Seed for every generated body and chunk size.
    #[arg(long, default_value_t = origin_sim::DEFAULT_SEED)]
    seed: u64,

    /// Log filter (error, warn, info, debug, trace); RUST_LOG wins.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log: String,
}

fn routes_help() -> String {
    let mut text = String::from("Routes (GET unless said otherwise; HEAD works on all):\n");
    for (route, what) in origin_sim::ROUTES {
        text.push_str(&format!("  {route:<24} {what}\n"));
    }
    text.push_str("\nExample:\n  origin-sim --http 127.0.0.1:0\n  curl http://127.0.0.1:PORT/bytes/100 | xxd | head");
    text
}

/// What this executable is, marked for proxylab's grader, which refuses its own programs
/// as a student's answer whatever they are renamed (labs/src/sandbox/identity.rs).
static IDENTITY: &str = "\u{1}proxylab-identity origin-sim\u{1}";

fn main() -> anyhow::Result<()> {
    std::hint::black_box(IDENTITY);
    let matches = Cli::command().after_help(routes_help()).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    proxy::init_logging(&cli.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let config = origin_sim::Config {
            http: cli.http,
            tls: cli.tls,
            echo: cli.echo,
            chat: cli.chat,
            seed: cli.seed,
            capture: None,
        };
        let listeners = origin_sim::Listeners::bind(&config).await?;
        if let Some((_, tls)) = &listeners.tls {
            std::fs::write(&cli.ca_out, &tls.ca_pem).with_context(|| {
                format!(
                    "cannot write the CA certificate to {}",
                    cli.ca_out.display()
                )
            })?;
            tracing::info!(
                "CA certificate written to {} (curl --cacert it)",
                cli.ca_out.display()
            );
        }
        for line in listeners.describe() {
            println!("{line}");
        }
        let handle = listeners.spawn(cli.seed)?;
        proxy::server::shutdown_signal().await;
        handle.shutdown().await;
        Ok(())
    })
}
