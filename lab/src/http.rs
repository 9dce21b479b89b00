//! HTTP GETs to a test peer or a bakery endpoint on loopback (`/metrics`, `/readyz`, an API's
//! JSON): one request over HTTP/1.0, its status and body, within a timeout; async, or blocking
//! for a caller without a runtime.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// An answer: its status code and its body (lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body of a `200`; `None` for any other status.
    pub fn ok(self) -> Option<String> {
        (self.status == 200).then_some(self.body)
    }
}

/// `GET path` on `addr` over HTTP/1.0 (the server closes the connection after its answer), the
/// whole exchange within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let request = format!("GET http://{addr}{path}");
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(Ok(answer)) => parse(&request, &answer),
        Ok(Err(source)) => Err(Error::Request { request, source }),
        Err(_elapsed) => Err(Error::Timeout { what: request, timeout }),
    }
}

/// [`get`] from a thread that runs no async runtime (it makes one for the request).
pub fn get_blocking(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
        Error::Request { request: format!("GET http://{addr}{path} (starting a runtime for it)"), source }
    })?;
    runtime.block_on(get(addr, path, timeout))
}

async fn exchange(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// `HTTP/1.x <status> ...` headers, a blank line, the body.
fn parse(request: &str, answer: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(answer);
    let malformed = || Error::Answer { request: request.to_string(), answer: text.chars().take(200).collect() };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let mut status_line = head.split_whitespace();
    let status = status_line
        .next()
        .filter(|version| version.starts_with("HTTP/"))
        .and(status_line.next())
        .and_then(|status| status.parse().ok())
        .ok_or_else(malformed)?;
    Ok(Response { status, body: body.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A server for one connection: reads the request head, answers `answer`, closes; gives back
    /// the request it read.
    async fn serve_once(answer: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0; 1];
                stream.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, served)
    }

    #[tokio::test]
    async fn a_get_sends_an_http_1_0_request_and_reads_the_status_and_body() {
        let (addr, served) = serve_once("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nflour 3\n").await;
        let response = get(addr, "/metrics", WAIT).await.unwrap();
        assert_eq!(response, Response { status: 200, body: "flour 3\n".to_string() });
        assert_eq!(response.ok().as_deref(), Some("flour 3\n"));
        assert_eq!(served.await.unwrap(), format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n"));
    }

    #[tokio::test]
    async fn another_status_is_returned_but_is_not_ok() {
        let (addr, _served) = serve_once("HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready").await;
        let response = get(addr, "/readyz", WAIT).await.unwrap();
        assert_eq!((response.status, response.body.as_str()), (503, "not ready"));
        assert_eq!(response.ok(), None);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_and_garbage_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let error = get(addr, "/slow", Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(error.to_string(), format!("timed out after 100ms waiting for GET http://{addr}/slow"));
        drop(listener);

        let (addr, _served) = serve_once("SSH-2.0-OpenSSH\r\n\r\n").await;
        let error = get(addr, "/", WAIT).await.unwrap_err();
        assert!(matches!(error, Error::Answer { .. }), "{error}");
    }

    #[test]
    fn the_blocking_get_works_without_a_runtime() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let mut line = String::new();
            while line != "\r\n" {
                line.clear();
                reader.read_line(&mut line).unwrap();
            }
            reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}").unwrap();
        });
        let response = get_blocking(addr, "/api", WAIT).unwrap();
        assert_eq!(response.ok().as_deref(), Some("{\"ok\":true}"));
        server.join().unwrap();
        let refused = get_blocking(addr, "/api", WAIT).unwrap_err();
        assert!(matches!(refused, Error::Request { .. }), "{refused}");
    }
}
