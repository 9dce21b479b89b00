//! `bakery-test-pod`: the processes of a simulated pod and of its client,
//! run by the harness (`bakery_tests::sim`) inside network namespaces.
//!
//! Every mode lives only as long as its stdin: the harness holds the other
//! end of the pipe, so if the test process dies, even by SIGKILL, these
//! processes see end-of-file and exit instead of lingering.
//!
//! - `serve <port>`: waits for a `start` line on stdin (the harness first
//!   moves it into the pod's cgroup, so everything it does is accounted
//!   there), listens on 0.0.0.0:<port>, accepts connections and holds them
//!   open, reading and discarding bytes. Reports on stdout, one event a
//!   line: `listening <port>`, `accepted`, `closed <bytes read>`.
//! - `idle`: a second process for the pod; says `ready`, then does nothing.
//! - `client <addr:port> <send bytes> <hold connections>`: sends the bytes
//!   on one connection and waits until the server has closed it (so all were
//!   received), then opens and holds the connections. Reports `sent <bytes>`
//!   and `holding <n>`.
//! - `http <port>`: starts as `serve` does, then answers HTTP/1.1: every
//!   request gets a 200 with a small body, on a kept-alive connection unless
//!   the request says `Connection: close` (then the server closes first, so
//!   the TIME_WAIT is the pod's, as with a web server behind a load test). It
//!   prints nothing per request, so its output stays small under load: a
//!   `count` line on stdin makes it print `served <requests> <connections>`,
//!   both totals so far.
//! - `load <addr:port> <requests/s> <keep-alive connections> <new
//!   connections/s> <seconds>`: a bounded load on an `http` server. The
//!   requests go at a fixed rate (a late one is not made up for, so the rate is
//!   never above the asked one): the new connections carry one request each,
//!   the rest are spread over the keep-alive connections. It reports `loading
//!   <keep-alive connections>` once those are open and `done <answered>
//!   <failed>` when the seconds are up, then exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bakery_lab::pause;

/// No single network operation of a test takes longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["serve", port] => port.parse().map_err(|e| format!("bad port {port}: {e}")).and_then(serve),
        ["idle"] => {
            say("ready");
            exit_when_stdin_closes();
            Ok(())
        }
        ["client", address, send, hold] => match (address.parse(), send.parse(), hold.parse()) {
            (Ok(address), Ok(send), Ok(hold)) => client(address, send, hold),
            _ => Err(format!("bad client arguments {args:?}")),
        },
        ["http", port] => port.parse().map_err(|e| format!("bad port {port}: {e}")).and_then(http),
        ["load", address, rate, kept, new, seconds] => {
            match (address.parse(), rate.parse(), kept.parse(), new.parse(), seconds.parse()) {
                (Ok(address), Ok(rate), Ok(kept), Ok(new), Ok(seconds)) => load(address, rate, kept, new, seconds),
                _ => Err(format!("bad load arguments {args:?}")),
            }
        }
        _ => Err(format!(
            "usage: bakery-test-pod serve <port> | idle | client <addr:port> <bytes> <n> | http <port> \
             | load <addr:port> <requests/s> <keep-alive connections> <new connections/s> <seconds>; got {args:?}"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bakery-test-pod: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until stdin reaches end-of-file, then exits the whole process.
fn exit_when_stdin_closes() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    std::process::exit(0);
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The harness reading the other end is the only audience; if it is gone
    // the stdin watcher ends the process.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Waits for the harness's `start` line: it first moves this process into the pod's cgroup.
fn wait_for_start() -> Result<(), String> {
    let mut start = String::new();
    std::io::stdin().lock().read_line(&mut start).map_err(|e| format!("stdin: {e}"))?;
    if start.trim() != "start" {
        return Err(format!("expected `start` on stdin, got {start:?}"));
    }
    Ok(())
}

fn serve(port: u16) -> Result<(), String> {
    wait_for_start()?;
    std::thread::spawn(exit_when_stdin_closes);
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    say(&format!("listening {port}"));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        say("accepted");
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                total += read as u64;
            }
            say(&format!("closed {total}"));
        });
    }
    Ok(())
}

fn client(address: SocketAddr, send: u64, hold: u32) -> Result<(), String> {
    std::thread::spawn(exit_when_stdin_closes);
    let connect = || {
        let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).map_err(|e| format!("connect {address}: {e}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
        Ok::<_, String>(stream)
    };
    if send > 0 {
        let mut stream = connect()?;
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut left = send;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n]).map_err(|e| format!("send: {e}"))?;
            left -= n as u64;
        }
        stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
        // The server closes after reading everything: then every byte is in.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).map_err(|e| format!("waiting for the server to close: {e}"))?;
        say(&format!("sent {send}"));
    }
    let held: Vec<TcpStream> = (0..hold).map(|_| connect()).collect::<Result<_, _>>()?;
    say(&format!("holding {}", held.len()));
    // Hold them until the harness closes stdin (the watcher thread exits).
    loop {
        std::thread::park();
    }
}

/// Requests the `http` server has answered, and connections it has accepted.
static ANSWERED: AtomicU64 = AtomicU64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// The body of every `http` answer: small, as a health check's or an API's is.
const HTTP_BODY: &[u8] = &[b'.'; 1024];

/// How long the load waits for one answer: far above the few milliseconds one takes, so only a
/// server that has stopped answering hits it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

fn http(port: u16) -> Result<(), String> {
    wait_for_start()?;
    std::thread::spawn(count_until_stdin_closes);
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    say(&format!("listening {port}"));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            // A connection the client drops mid-request ends here; the client counts it.
            let _ = answer_http(stream);
        });
    }
    Ok(())
}

/// Answers each `count` line with the totals, and exits the process at end-of-file.
fn count_until_stdin_closes() {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "count" {
            say(&format!("served {} {}", ANSWERED.load(Ordering::Relaxed), ACCEPTED.load(Ordering::Relaxed)));
        }
    }
    std::process::exit(0);
}

/// Answers the requests of one connection until the client closes it or asks to close.
fn answer_http(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let head = |close: bool| {
        let connection = if close { "close" } else { "keep-alive" };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            HTTP_BODY.len()
        );
        // One write per answer, as a server that buffers its response makes.
        [head.as_bytes(), HTTP_BODY].concat()
    };
    let (kept, closing) = (head(false), head(true));
    loop {
        // The head ends at the first empty line; the load sends GETs only, without a body.
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if let Some((name, value)) = text.split_once(':') {
                close |= name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close");
            }
        }
        writer.write_all(if close { &closing } else { &kept })?;
        ANSWERED.fetch_add(1, Ordering::Relaxed);
        if close {
            return Ok(());
        }
    }
}

fn load(address: SocketAddr, rate: u32, kept: u32, new: u32, seconds: u64) -> Result<(), String> {
    std::thread::spawn(exit_when_stdin_closes);
    let kept_rate = rate.checked_sub(new).ok_or_else(|| format!("{new} new connections/s exceed {rate} requests/s"))?;
    if kept_rate > 0 && kept == 0 {
        return Err(format!("{kept_rate} requests/s left for keep-alive connections, but none asked"));
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let streams = (0..kept).map(|_| open(address)).collect::<Result<Vec<_>, _>>()?;
    say(&format!("loading {}", streams.len()));
    let mut workers = Vec::new();
    if kept_rate > 0 {
        let period = Duration::from_secs_f64(f64::from(kept) / f64::from(kept_rate));
        for (i, stream) in streams.into_iter().enumerate() {
            // Staggered, so that the connections' requests do not all go in the same instant.
            let first = start + period.mul_f64(i as f64 / f64::from(kept));
            let mut stream = Some(stream);
            workers.push(std::thread::spawn(move || {
                paced(first, period, deadline, || keep_alive_request(address, &mut stream))
            }));
        }
    }
    if new > 0 {
        let period = Duration::from_secs_f64(1.0 / f64::from(new));
        workers.push(std::thread::spawn(move || paced(start, period, deadline, || one_request(address).is_ok())));
    }
    let (mut answered, mut failed) = (0, 0);
    for worker in workers {
        let (ok, not) = worker.join().unwrap_or((0, 1));
        (answered, failed) = (answered + ok, failed + not);
    }
    say(&format!("done {answered} {failed}"));
    Ok(())
}

/// Makes `request` at `first`, then every `period` until `deadline`; returns how many succeeded
/// and failed. A request that comes late is not made up for: the rate stays at most the asked one.
fn paced(first: Instant, period: Duration, deadline: Instant, mut request: impl FnMut() -> bool) -> (u64, u64) {
    let (mut ok, mut failed, mut next) = (0, 0, first);
    loop {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            pause(wait);
        }
        if Instant::now() >= deadline {
            return (ok, failed);
        }
        if request() {
            ok += 1
        } else {
            failed += 1
        }
        next = (next + period).max(Instant::now());
    }
}

fn open(address: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect_timeout(&address, LOAD_TIMEOUT).map_err(|e| format!("connect {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(LOAD_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(LOAD_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(BufReader::new(stream))
}

/// One request on the kept connection; a failed one is dropped and the next request opens anew.
fn keep_alive_request(address: SocketAddr, stream: &mut Option<BufReader<TcpStream>>) -> bool {
    if stream.is_none() {
        *stream = open(address).ok();
    }
    let answered = stream.as_mut().is_some_and(|stream| get(stream, false).is_ok());
    if !answered {
        *stream = None;
    }
    answered
}

/// One request on a new connection, which the server closes after its answer.
fn one_request(address: SocketAddr) -> Result<(), String> {
    let mut stream = open(address)?;
    get(&mut stream, true).map_err(|e| e.to_string())?;
    // Waits for the server's close, so that the TIME_WAIT is on its side.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    Ok(())
}

/// One GET and its whole answer, which must be a 200.
fn get(stream: &mut BufReader<TcpStream>, close: bool) -> std::io::Result<()> {
    let request: &[u8] = if close {
        b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n"
    };
    stream.get_mut().write_all(request)?;
    let (mut line, mut status, mut length) = (String::new(), None, 0);
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if status.is_none() {
            status = Some(text.starts_with("HTTP/1.1 200 "));
        } else if let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    if status == Some(true) { Ok(()) } else { Err(std::io::Error::other(format!("answered {status:?}"))) }
}
