//! The `deltagate` binary: configuration, logging, signals; everything else is the library.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltagate::config::Config;
use deltagate::server::Server;
use deltagate::sql::Engine;
use deltagate::storage::Storage;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

// Ingest allocates and frees many short-lived buffers across threads; mimalloc does that with
// far less contention and fragmentation than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    deltagate::sql::configure_stack_growth();
    // Statements are parsed, planned, run and dropped on the runtime's threads (DataFusion's
    // tasks too); their stack must fit the deepest statement the SQL layer admits.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(deltagate::sql::THREAD_STACK_SIZE)
        .build()
        .context("cannot start the runtime")?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).context("invalid --log filter")?)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !config.huge_pages {
        disable_huge_pages();
    }
    let built = config.build().context("invalid configuration")?;
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    let storage = Storage::open(built.storage.clone(), runtime)
        .await
        .with_context(|| format!("cannot open warehouse {}", built.storage.warehouse))?;
    let tables = storage.all_tables().len();
    let engine = Engine::new(storage.clone(), built.engine.clone())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    info!(
        %address,
        warehouse = %storage.warehouse(),
        tables,
        database = built.engine.database,
        user = built.engine.superuser,
        auth = ?config.auth,
        tls = built.server.tls.is_some(),
        "deltagate listening"
    );
    if let Some(password) = &built.generated_password {
        warn!(
            user = built.engine.superuser,
            password, "no password configured (DELTAGATE_PASSWORD): generated one for this run"
        );
    }
    let rescan = {
        let storage = storage.clone();
        let every = config.rescan_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match storage.rescan().await {
                    Ok(0) => {}
                    Ok(added) => info!(added, "found new tables in the warehouse"),
                    Err(e) => warn!(error = %e, "warehouse rescan failed"),
                }
            }
        })
    };
    let server = Server::new(Arc::clone(&engine), built.server);
    server.run(listener, shutdown_signal()).await?;
    rescan.abort();
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("received SIGINT"),
        _ = term => info!("received SIGTERM"),
    }
}

/// Opts this process out of transparent huge pages (see `--huge-pages`); mappings made before
/// this call (a few MiB of startup allocations) keep what they have.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        warn!(error = %e, "cannot disable transparent huge pages");
    }
}
