//! Watches: the stream of JSON WatchEvents from a resourceVersion (every current object first
//! without one), BOOKMARKs, `410 Gone` for a version older than the history kept or after
//! [`super::KubeDouble::expire_watches`], and the end of a watch whose API was removed.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::routes::{ListParams, is_true, json_response};
use super::selectors::Filter;
use super::tables::{self, Include};
use super::{Event, Kind, Shared, expire};

/// How often an idle watch gets a BOOKMARK (when it asked for them).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

fn gone_status(message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": "Expired", "code": 410})
}

fn event_line(kind_of_change: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind_of_change, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// One watch event's line: the object, or a one-row Table when the client asked for Tables.
fn object_event(kind: Kind, kind_of_change: &str, object: &Value, rv: u64, table: Option<Include>) -> Bytes {
    match table {
        Some(include) => event_line(kind_of_change, &tables::table(kind, &[object], rv, include, SystemTime::now())),
        None => event_line(kind_of_change, object),
    }
}

/// The objects of `kind` that match `filter` now, and the resourceVersion they are as of.
fn current_objects(shared: &Shared, kind: Kind, filter: &Filter) -> (Vec<Value>, u64) {
    let inner = shared.lock();
    let current =
        inner.objects.iter().filter(|(k, v)| k.0 == kind && filter.matches(v)).map(|(_, v)| v.clone()).collect();
    (current, inner.rv)
}

pub(super) fn watch_response(
    shared: Shared,
    params: &ListParams,
    kind: Kind,
    filter: Filter,
    table: Option<Include>,
) -> Response {
    let from_rv: u64 = params.resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0);
    let bookmarks = is_true(&params.allow_watch_bookmarks);
    let timeout = Duration::from_secs(params.timeout_seconds.unwrap_or(290).clamp(1, 3600));
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = shared.changed.subscribe();
        let mut expired = shared.expired.subscribe();
        expired.mark_unchanged();
        // No resourceVersion (or 0) means "the current state, then changes": every object that
        // matches arrives first as ADDED, as from a real server.
        let mut sent_through = from_rv;
        if from_rv == 0 {
            let (current, rv) = current_objects(&shared, kind, &filter);
            for object in current {
                if tx.send(Ok(object_event(kind, "ADDED", &object, rv, table))).await.is_err() {
                    return;
                }
            }
            sent_through = rv;
        }
        loop {
            let (pending, too_old, rv, served) = {
                let inner = shared.lock();
                let too_old = sent_through + 1 < inner.oldest_watchable_rv;
                let pending: Vec<Event> =
                    inner.events.iter().filter(|e| e.kind == kind && e.rv > sent_through).cloned().collect();
                (pending, too_old, inner.rv, inner.serves(kind))
            };
            if too_old {
                let message = format!("too old resource version: {sent_through} ({rv})");
                let _ = tx.send(Ok(event_line("ERROR", &gone_status(&message)))).await;
                return;
            }
            for event in &pending {
                sent_through = event.rv;
                if let Some((change, object)) = filter.event(event)
                    && tx.send(Ok(object_event(kind, change, object, event.rv, table))).await.is_err()
                {
                    return;
                }
            }
            if !served {
                // The API was removed (its CRD deleted): the server ends the watch, and the
                // client's next request gets 404.
                return;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = expired.changed() => {
                    let message = format!("too old resource version: {sent_through}");
                    let _ = tx.send(Ok(event_line("ERROR", &gone_status(&message)))).await;
                    return;
                }
                _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => {
                    let rv = shared.lock().rv;
                    let object = json!({"kind": kind.name(), "apiVersion": kind.api_version(),
                                        "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(Ok(event_line("BOOKMARK", &object))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(super) async fn expire_handler(AxumState(shared): AxumState<Shared>) -> Response {
    expire(&shared);
    json_response(StatusCode::OK, &json!({"expired": true}))
}
