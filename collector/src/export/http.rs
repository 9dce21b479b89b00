//! `GET /metrics`: the export's points in Prometheus text format, rendered per scrape from the
//! in-memory node state (no queue: a slow scraper only slows itself). With a [`Guard`]
//! (`--metrics-require-token`), a scrape must carry a read token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::otlp::PointSource;
use crate::error::Result;

/// The Prometheus text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Decides on a scrape from its `Authorization` header and peer: Ok, or (HTTP status, body).
pub type Guard = Arc<dyn Fn(Option<&str>, Option<SocketAddr>) -> std::result::Result<(), (u16, String)> + Send + Sync>;

#[derive(Clone)]
struct Served {
    source: PointSource,
    guard: Option<Guard>,
}

/// Binds `listen` and serves `/metrics` (to the scrapes `guard` lets through, when there is
/// one) until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    source: PointSource,
    guard: Option<Guard>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let (listener, local) = crate::server::listen_on(listen, "cannot listen for /metrics on").await?;
    let router = Router::new().route("/metrics", get(metrics)).with_state(Served { source, guard });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
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

async fn metrics(
    State(served): State<Served>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(guard) = &served.guard {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Err((code, body)) = guard(authorization, Some(peer)) {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED);
            return (status, [(header::WWW_AUTHENTICATE, "Bearer realm=\"bakery\"")], body).into_response();
        }
    }
    let text = super::prometheus::render(&(served.source)().await);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
