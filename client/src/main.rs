//! The `client` binary: fetch URLs directly or through a proxy.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// proxylab's client: fetch a URL directly or through a proxy, and time it.
#[derive(Debug, Parser)]
#[command(name = "client", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET a URL: status (and headers with -v) on stderr, the body on stdout, then the
    /// time to connect, to the first byte, and in total.
    Get {
        /// An http:// URL.
        url: String,
        /// Go through this HTTP proxy (HOST:PORT).
        #[arg(long, value_name = "HOST:PORT")]
        proxy: Option<String>,
        /// Also print the response headers.
        #[arg(short, long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Get {
            url,
            proxy,
            verbose,
        } => {
            let proxy = proxy.map(|p| {
                p.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string()
            });
            match runtime.block_on(client::get(&url, proxy.as_deref())) {
                Ok(res) => {
                    eprintln!("{:?} {}", res.version, res.status);
                    if verbose {
                        for (name, value) in &res.headers {
                            eprintln!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
                        }
                    }
                    let _ = std::io::stdout().write_all(&res.body);
                    let _ = std::io::stdout().flush();
                    eprintln!(
                        "connect {:.2?}, first byte {:.2?}, total {:.2?}, {} bytes",
                        res.connect,
                        res.first_byte,
                        res.total,
                        res.body.len()
                    );
                    if res.status < 400 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(22)
                    }
                }
                Err(e) => {
                    eprintln!("client: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
