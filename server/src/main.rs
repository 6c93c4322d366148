//! `cargo run -p server`: parse flags, set up logging, bind, and run until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use server::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Some(dest) = &config.backup_to {
        server::db::backup(&config.data_dir, dest)
            .with_context(|| format!("backing up into {}", dest.display()))?;
        tracing::info!(to = %dest.display(), "backup written");
        return Ok(());
    }
    if let (true, Some(url)) = (config.import_into_redis, &config.redis_url) {
        let imported = server::import::into_redis(&config.data_dir, url)
            .await
            .with_context(|| format!("importing {} into redis", config.data_dir.display()))?;
        tracing::info!(
            users = imported.users,
            sessions = imported.sessions,
            rooms = imported.rooms,
            messages = imported.messages,
            "imported into redis"
        );
        return Ok(());
    }
    let listener =
        server::listener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    match &config.redis_url {
        Some(_) => tracing::info!("listening on http://{addr} (redis mode)"),
        None => tracing::info!(data_dir = %config.data_dir.display(), "listening on http://{addr}"),
    }
    server::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
