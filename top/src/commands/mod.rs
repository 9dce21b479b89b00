//! The non-interactive commands that talk to the collector's diagnosis: `alerts`, `report`,
//! `window start|stop`, and `loadtest` (a load command run inside a window). Each module formats
//! what the collector answered (pure, tested with data) and has one `run` that makes the call and
//! writes to the given output.

pub mod alerts;
pub mod loadtest;
pub mod report;
pub mod window;

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::source::grpc::Client;
use crate::source::{GrpcConfig, GrpcSource};

/// Connects to the collector described by `config`.
pub async fn connect(config: GrpcConfig) -> Result<(Client, Duration)> {
    let mut source = GrpcSource::new(config)?;
    let client = source.query_client().await?;
    Ok((client, source.call_timeout()))
}

/// One call with the deadline every call has.
pub async fn call<T>(
    timeout: Duration,
    url: &str,
    future: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status.into()),
        Err(_) => Err(Error::Timeout { url: url.to_string(), after: timeout }),
    }
}

/// `2026-11-25 11:42:07 UTC` from Unix epoch ms (0 prints "-").
pub fn format_time(epoch_ms: i64) -> String {
    if epoch_ms <= 0 {
        return "-".into();
    }
    let time = std::time::UNIX_EPOCH + Duration::from_millis(epoch_ms as u64);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.replace('T', " ").replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(format_time(1_764_070_927_000), "2025-11-25 11:42:07 UTC");
        assert_eq!(format_time(0), "-");
    }
}
