//! The processes that run inside the simulated cluster: the WordPress stand-in (an HTTP server whose
//! every request burns real CPU, queries the database and returns a page), the MySQL stand-in (a TCP
//! service: a query is a small round trip), a CPU burner and a memory hog for the per-node extras,
//! and an HTTP probe. Plain threads: one per connection, a few dozen at most, which is what the
//! reference cluster's PHP workers and MySQL threads look like too.
//!
//! CPU is burned by thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so a request costs
//! the same CPU however busy the machine is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest request head the web stand-in reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a web pod writes its counters to its stats file.
const STATS_EVERY: Duration = Duration::from_millis(200);

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec().max(0) as u64, t.tv_nsec().max(0) as u32))
        .unwrap_or_default()
}

/// Burns `cpu` of this thread's CPU time.
pub fn burn_cpu(cpu: Duration) {
    let start = thread_cpu_time();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while thread_cpu_time().saturating_sub(start) < cpu {
        for i in 0..2_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

/// Waits without using CPU: a stand-in for disk or lock waits inside a server thread (never in an
/// async runtime).
fn idle(duration: Duration) {
    bakery_lab::pause(duration);
}

/// What a web pod has done; written to its stats file, read by the demo as an independent count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests answered with an error because the database could not be reached.
    pub errors: u64,
    /// Response bytes written (head and body).
    pub bytes_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WebStats {
        WebStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

/// Reads a web pod's stats file.
pub fn read_stats(path: &Path) -> Option<WebStats> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The WordPress stand-in's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub cpu: Duration,
    pub response_bytes: usize,
    pub database: Option<SocketAddr>,
    pub queries: u32,
    pub pod_name: String,
    pub stats: Option<PathBuf>,
}

/// A page of about `bytes` bytes that looks like a blog's front page.
pub fn page(bytes: usize, pod: &str) -> Vec<u8> {
    let head =
        format!("<!DOCTYPE html>\n<html><head><title>The Bakery</title></head><body>\n<!-- served by {pod} -->\n");
    let tail = "</body></html>\n";
    let paragraph = "<article><h2>Sourdough at altitude</h2><p>Feed the starter twice, keep it warm, \
        and give the dough the time it asks for. Fold every half hour; shape when it jiggles.</p></article>\n";
    let mut page = head.into_bytes();
    while page.len() + paragraph.len() + tail.len() <= bytes {
        page.extend_from_slice(paragraph.as_bytes());
    }
    let filler = bytes.saturating_sub(page.len() + tail.len());
    page.extend(std::iter::repeat_n(b' ', filler));
    page.extend_from_slice(tail.as_bytes());
    page
}

/// The parts of a request head the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub http_1_0: bool,
    /// `Connection: close` (1.1) or no `Connection: keep-alive` (1.0).
    pub close: bool,
    pub content_length: usize,
}

/// Parses a request head (request line and headers, without the blank line).
pub fn parse_head(head: &str) -> Option<RequestHead> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let version = request_line.split_whitespace().nth(2)?;
    let http_1_0 = version == "HTTP/1.0";
    let mut connection = None;
    let mut content_length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            connection = Some(value.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        }
    }
    let close = match connection.as_deref() {
        Some(c) if c.contains("close") => true,
        Some(c) if c.contains("keep-alive") => false,
        _ => http_1_0,
    };
    Some(RequestHead { http_1_0, close, content_length })
}

/// Runs the WordPress stand-in until the process is killed.
pub fn serve_web(config: WebConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen)?;
    let counters = Arc::new(Counters::default());
    if let Some(path) = config.stats.clone() {
        let counters = Arc::clone(&counters);
        std::thread::spawn(move || write_stats_forever(&path, &counters));
    }
    println!("listening {}", config.listen);
    let page = Arc::new(page(config.response_bytes, &config.pod_name));
    let config = Arc::new(config);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let (config, counters, page) = (Arc::clone(&config), Arc::clone(&counters), Arc::clone(&page));
        std::thread::spawn(move || {
            let _ = handle_web(stream, &config, &counters, &page);
        });
    }
    Ok(())
}

fn write_stats_forever(path: &Path, counters: &Counters) {
    let temporary = path.with_extension("tmp");
    let mut last = None;
    loop {
        let stats = counters.snapshot();
        if last != Some(stats)
            && let Ok(json) = serde_json::to_vec(&stats)
            && std::fs::write(&temporary, json).is_ok()
        {
            let _ = std::fs::rename(&temporary, path);
            last = Some(stats);
        }
        idle(STATS_EVERY);
    }
}

fn handle_web(stream: TcpStream, config: &WebConfig, counters: &Counters, page: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        head.clear();
        // The head ends at the first empty line.
        loop {
            let before = head.len();
            if reader.read_line(&mut head)? == 0 {
                return Ok(());
            }
            if head.len() > MAX_HEAD_BYTES {
                return Ok(());
            }
            if head[before..].trim_end_matches(['\r', '\n']).is_empty() {
                break;
            }
        }
        let Some(request) = parse_head(head.trim_end()) else { return Ok(()) };
        if request.content_length > 0 {
            std::io::copy(&mut (&mut reader).take(request.content_length as u64), &mut std::io::sink())?;
        }
        burn_cpu(config.cpu);
        let database_ok = match config.database {
            Some(database) => query_database(database, config.queries).is_ok(),
            None => true,
        };
        let (status, body): (&str, &[u8]) = if database_ok {
            ("200 OK", page)
        } else {
            ("503 Service Unavailable", b"Error establishing a database connection\n")
        };
        let version = if request.http_1_0 { "HTTP/1.0" } else { "HTTP/1.1" };
        let connection = if request.close { "close" } else { "keep-alive" };
        let response_head = format!(
            "{version} {status}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: {}\r\nX-Served-By: {}\r\nConnection: {connection}\r\n\r\n",
            body.len(),
            config.pod_name
        );
        writer.write_all(response_head.as_bytes())?;
        writer.write_all(body)?;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.bytes_sent.fetch_add((response_head.len() + body.len()) as u64, Ordering::Relaxed);
        if !database_ok {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if request.close {
            return Ok(());
        }
    }
}

/// One page's queries: a new connection (as PHP's mysqli opens per request), `queries` round trips.
fn query_database(database: SocketAddr, queries: u32) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&database, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = Vec::new();
    for query in 0..queries {
        writeln!(writer, "SELECT * FROM wp_posts WHERE post_status = 'publish' LIMIT 10 /* {query} */")?;
        reply.clear();
        if reader.read_until(b'\n', &mut reply)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the database closed the connection"));
        }
    }
    Ok(())
}

/// The MySQL stand-in's settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub listen: SocketAddr,
    pub cpu: Duration,
    pub wait: Duration,
    pub response_bytes: usize,
}

/// Runs the MySQL stand-in until the process is killed: every line is a query, answered after
/// `cpu` of CPU and `wait` of waiting with `response_bytes` bytes ending in a newline.
pub fn serve_database(config: DatabaseConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen)?;
    println!("listening {}", config.listen);
    let mut reply = vec![b'r'; config.response_bytes.max(1)];
    if let Some(last) = reply.last_mut() {
        *last = b'\n';
    }
    let reply = Arc::new(reply);
    let config = Arc::new(config);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, reply) = (Arc::clone(&config), Arc::clone(&reply));
        std::thread::spawn(move || {
            let _ = handle_query(stream, &config, &reply);
        });
    }
    Ok(())
}

fn handle_query(stream: TcpStream, config: &DatabaseConfig, reply: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        burn_cpu(config.cpu);
        if !config.wait.is_zero() {
            idle(config.wait);
        }
        writer.write_all(reply)?;
    }
}

/// Burns `cores` of CPU until killed: `ceil(cores)` threads, each busy for its part of every
/// 100 ms period.
pub fn burn_forever(cores: f64) -> ! {
    let threads = cores.ceil().max(1.0) as usize;
    let per_thread = (cores / threads as f64).clamp(0.0, 1.0);
    let period = Duration::from_millis(100);
    for _ in 1..threads {
        std::thread::spawn(move || burn_periods(per_thread, period));
    }
    println!("burning {cores} cores");
    burn_periods(per_thread, period)
}

fn burn_periods(fraction: f64, period: Duration) -> ! {
    loop {
        let start = Instant::now();
        burn_cpu(period.mul_f64(fraction));
        idle(period.saturating_sub(start.elapsed()));
    }
}

/// Allocates and touches `mib` MiB, then holds it until killed.
pub fn hog_forever(mib: u64) -> ! {
    let bytes = usize::try_from(mib).unwrap_or(usize::MAX / (1 << 20)).saturating_mul(1 << 20);
    let mut held = vec![0u8; bytes];
    for (i, byte) in held.iter_mut().enumerate().step_by(4096) {
        *byte = (i / 4096) as u8 | 1;
    }
    std::hint::black_box(&held);
    println!("holding {mib} MiB");
    loop {
        std::thread::park();
    }
}

/// One HTTP GET (HTTP/1.0): the status code and the body length.
pub fn probe(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, usize)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bakery.home.arpa\r\nUser-Agent: bakery-demo-probe\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.find("\r\n\r\n").map(|i| response.len() - i - 4).unwrap_or(0);
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_the_asked_size() {
        for size in [1_000, 50_000, 123_457] {
            let page = page(size, "wordpress-abc");
            assert_eq!(page.len(), size);
            assert!(page.starts_with(b"<!DOCTYPE html>") && page.ends_with(b"</html>\n"));
        }
    }

    #[test]
    fn request_heads_say_when_to_close() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: x", false),
            ("GET / HTTP/1.1\r\nConnection: close", true),
            ("GET / HTTP/1.0\r\nHost: x", true),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive", false),
        ];
        for (head, close) in cases {
            assert_eq!(parse_head(head).unwrap().close, close, "{head:?}");
        }
        assert_eq!(parse_head("POST / HTTP/1.1\r\ncontent-length: 12").unwrap().content_length, 12);
        assert_eq!(parse_head("garbage"), None);
    }

    #[test]
    fn cpu_is_burned_by_cpu_time() {
        let start = thread_cpu_time();
        burn_cpu(Duration::from_millis(20));
        let used = thread_cpu_time() - start;
        assert!(used >= Duration::from_millis(20) && used < Duration::from_millis(200), "{used:?}");
    }

    #[test]
    fn a_web_request_costs_cpu_queries_the_database_and_returns_the_page() {
        let database = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let db_config = DatabaseConfig {
            listen: database,
            cpu: Duration::from_millis(1),
            wait: Duration::from_millis(2),
            response_bytes: 300,
        };
        std::thread::spawn(move || serve_database(db_config));
        let web = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let stats = tempfile::tempdir().unwrap();
        let stats_file = stats.path().join("web.json");
        let config = WebConfig {
            listen: web,
            cpu: Duration::from_millis(2),
            response_bytes: 50_000,
            database: Some(database),
            queries: 3,
            pod_name: "wordpress-test".into(),
            stats: Some(stats_file.clone()),
        };
        std::thread::spawn(move || serve_web(config));
        // The listeners were bound and dropped above; wait for the servers to bind them again.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (status, body) = loop {
            match probe(web, "/", Duration::from_secs(5)) {
                Ok(answer) => break answer,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            idle(Duration::from_millis(10));
        };
        assert_eq!((status, body), (200, 50_000));
        // Keep-alive: two requests on one connection.
        let mut stream = TcpStream::connect(web).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        assert_eq!(String::from_utf8_lossy(&all).matches("HTTP/1.1 200 OK").count(), 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stats = read_stats(&stats_file);
            if stats.is_some_and(|s| s.requests == 3) {
                let stats = stats.unwrap();
                assert_eq!((stats.accepted, stats.errors), (2, 0));
                assert!(stats.bytes_sent > 150_000);
                break;
            }
            assert!(Instant::now() < deadline, "{stats:?}");
            idle(Duration::from_millis(20));
        }
    }
}
