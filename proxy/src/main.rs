//! The `proxy` binary: parse the command line, set up logging, run the library.

use anyhow::Context;
use clap::Parser;
use proxy::pipeline::Shared;
use proxy::Config;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// mimalloc: a proxy allocates many small, short-lived buffers per request on several
// threads; mimalloc's per-thread free lists measured faster than glibc's malloc here
// (see the closing note of issue 2 and `make bench`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
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
        tracing::info!(
            "{workers} worker thread(s), up to {} client(s) at once{}",
            config.concurrency(),
            if config.sequential {
                " (sequential mode)"
            } else {
                ""
            }
        );
        proxy::run(
            listener,
            Arc::new(Shared::new(config, addr).context("setting up the cache directory")?),
            proxy::server::shutdown_signal(),
        )
        .await?;
        tracing::info!("proxy stopped");
        Ok(())
    })
}
