//! `GET /metrics`: the export's points in Prometheus text format, rendered per scrape from the
//! in-memory node state (no queue: a slow scraper only slows itself).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::otlp::PointSource;
use crate::error::{Error, Result};

/// The Prometheus text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` and serves `/metrics` until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    source: PointSource,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| Error::Io {
        action: "cannot listen for /metrics on",
        path: PathBuf::from(listen.to_string()),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        action: "cannot read the bound address of",
        path: PathBuf::from(listen.to_string()),
        source,
    })?;
    let router = Router::new().route("/metrics", get(metrics)).with_state(source);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|down| *down).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the /metrics server stopped");
        }
    });
    Ok((local, task))
}

async fn metrics(State(source): State<PointSource>) -> impl IntoResponse {
    let text = super::prometheus::render(&source().await);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
