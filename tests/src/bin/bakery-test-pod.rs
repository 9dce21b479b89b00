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

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

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
        _ => Err(format!("usage: bakery-test-pod serve <port> | idle | client <addr:port> <bytes> <n>; got {args:?}")),
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

fn serve(port: u16) -> Result<(), String> {
    let mut start = String::new();
    std::io::stdin().lock().read_line(&mut start).map_err(|e| format!("stdin: {e}"))?;
    if start.trim() != "start" {
        return Err(format!("expected `start` on stdin, got {start:?}"));
    }
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
