//! `lic-portal serve`: the HTTP API, its logging and its shutdown.

use crate::*;

/// Log lines on standard error (`LIC_LOG` filters, default `info`), coloured only on a
/// terminal and never with `NO_COLOR` set (https://no-color.org).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Whether log lines get ANSI colours: on a terminal, unless `NO_COLOR` is set and not
/// empty.
pub(crate) fn log_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Ctrl-C or SIGTERM (service managers): stop accepting, finish the requests under way.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

pub(crate) async fn serve(
    g: &Global,
    listen: std::net::SocketAddr,
    uploads_per_minute: u32,
    web: lic_portal::web::WebConfig,
) -> anyhow::Result<()> {
    init_logging();
    let portal = std::sync::Arc::new(open(g).await?);
    let limiter = if uploads_per_minute == 0 {
        lic_portal::http::RateLimiter::unlimited()
    } else {
        lic_portal::http::RateLimiter::new(
            uploads_per_minute,
            uploads_per_minute.div_ceil(3).max(1),
        )
    };
    // Reclamation of inactive floating seats, for the policies that enable it.
    tokio::spawn(std::sync::Arc::clone(&portal).reclaim_timer(None));
    let state = lic_portal::http::AppState::new(portal)
        .with_limiter(limiter)
        .with_web(web);
    let bound = lic_portal::http::Bound::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen} (is another portal running? --listen chooses another \
                 address; port 0 lets the system choose)"
            )
        })?;
    // The first line of standard output, before any request is taken: scripts and tests
    // that asked for port 0 learn the port here.
    let url = bound.url();
    match g.format {
        Format::Json => out(&format!(
            "{}\n",
            serde_json::to_string(&Doc {
                format: JSON_VERSION,
                body: serde_json::json!({ "listening": url }),
            })?
        ))?,
        Format::Text => out(&format!("listening on {url}\n"))?,
    }
    std::io::stdout()
        .flush()
        .context("cannot write to standard output")?;
    bound
        .serve(state, shutdown_signal())
        .await
        .with_context(|| format!("cannot serve on {url}"))
}
