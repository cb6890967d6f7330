//! The `proxy` binary: parse the command line, set up logging, run the library.

use anyhow::Context;
use clap::Parser;
use proxy::config::{Command, RulesCommand};
use proxy::policy::rules;
use proxy::shared::Shared;
use proxy::Config;
use std::sync::atomic::{AtomicUsize, Ordering};

// mimalloc: a proxy allocates many small, short-lived buffers per request on several
// threads; mimalloc's per-thread free lists measured faster than glibc's malloc here
// (see the closing note of issue 2 and `make bench`). Built without transparent huge pages
// (the `no_thp` feature): with them an idle proxy held 8 MiB more, and was no faster.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What this executable is, marked for proxylab's grader, which refuses its own programs
/// as a student's answer whatever they are renamed (labs/src/sandbox/identity.rs).
static IDENTITY: &str = "\u{1}proxylab-identity proxy\u{1}";

fn main() -> anyhow::Result<()> {
    std::hint::black_box(IDENTITY);
    let config = Config::parse();
    if let Some(command) = &config.command {
        if let Err(e) = run_command(command, &config) {
            eprintln!("proxy: {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    proxy::init_logging(&config.log);
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next_thread = AtomicUsize::new(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || format!("worker-{}", next_thread.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        println!("proxy listening on http://{addr}");
        let admin = proxy::server::bind_admin(&config).await?;
        if let Some(admin) = &admin {
            println!("proxy admin listening on http://{}", admin.local_addr()?);
        }
        tracing::info!(
            "{workers} worker thread(s), up to {} client(s) at once{}",
            config.concurrency(),
            if config.sequential {
                " (sequential mode)"
            } else {
                ""
            }
        );
        let shared = Shared::new(config, addr)?;
        if let Some(admin) = admin {
            tokio::spawn(proxy::observe::admin::serve(admin, shared.clone()));
        }
        proxy::run(listener, shared, proxy::server::shutdown_signal()).await?;
        tracing::info!("proxy stopped");
        Ok(())
    })
}

/// `proxy block`, `unblock`, `rules check`, `hash-password`: file work, no server.
fn run_command(command: &Command, config: &Config) -> anyhow::Result<()> {
    let rules_file = || {
        config
            .rules
            .clone()
            .context("this command needs --rules FILE (the file the proxy reads its rules from)")
    };
    match command {
        Command::Block { pattern } => {
            let path = rules_file()?;
            let done = rules::block(&path, pattern).map_err(|e| located(&path, e))?;
            println!("{done}");
        }
        Command::Unblock { pattern } => {
            let path = rules_file()?;
            let done = rules::unblock(&path, pattern).map_err(|e| located(&path, e))?;
            println!("{done}");
        }
        Command::Rules(RulesCommand::Check { file }) => {
            let set = rules::RuleSet::load(file).map_err(|e| located(file, e))?;
            println!("{}: ok: {}", file.display(), set.summary());
        }
        Command::HashPassword { user } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin");
            println!(
                "{}",
                proxy::policy::auth::hash_line(user, password).map_err(anyhow::Error::msg)?
            );
        }
    }
    Ok(())
}

/// `FILE:LINE:COLUMN: message`, the form editors jump to.
fn located(path: &std::path::Path, e: rules::RulesError) -> anyhow::Error {
    match (e.line, e.column) {
        (0, _) => anyhow::anyhow!("{}", e.message),
        (l, 0) => anyhow::anyhow!("{}:{l}: {}", path.display(), e.message),
        (l, c) => anyhow::anyhow!("{}:{l}:{c}: {}", path.display(), e.message),
    }
}
