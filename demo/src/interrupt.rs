//! Ctrl-C, SIGTERM and SIGHUP: the demo stops what it is doing and cleans up, instead of dying with
//! namespaces and processes left behind. A thread waits for the signals (tokio's handlers, so no
//! unsafe code) and raises a flag that every wait in the demo checks.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Flag {
    raised: Mutex<Option<&'static str>>,
    changed: Condvar,
}

static FLAG: OnceLock<Arc<Flag>> = OnceLock::new();

fn flag() -> &'static Arc<Flag> {
    FLAG.get_or_init(|| Arc::new(Flag::default()))
}

/// Starts listening for the signals (once per process).
pub fn install() -> std::io::Result<()> {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.get().is_some() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let streams =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()));
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = streams else {
                let _ = ready_tx.send(false);
                return;
            };
            let _ = ready_tx.send(true);
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "interrupted (Ctrl-C)",
                    _ = term.recv() => "terminated (SIGTERM)",
                    _ = hup.recv() => "hung up (SIGHUP)",
                };
                raise(name);
            }
        });
    })?;
    if ready_rx.recv().unwrap_or(false) {
        let _ = STARTED.set(());
        Ok(())
    } else {
        Err(std::io::Error::other("cannot listen for signals"))
    }
}

/// Raises the flag (also usable by tests and by the demo itself to stop early).
pub fn raise(why: &'static str) {
    let flag = flag();
    let mut raised = flag.raised.lock().unwrap_or_else(|p| p.into_inner());
    raised.get_or_insert(why);
    flag.changed.notify_all();
}

/// Why the demo was asked to stop, if it was.
pub fn raised() -> Option<&'static str> {
    *flag().raised.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits `duration` unless the flag is raised first; `Err(why)` then.
pub fn wait(duration: Duration) -> Result<(), &'static str> {
    let flag = flag();
    let deadline = Instant::now() + duration;
    let mut raised = flag.raised.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(why) = *raised {
            return Err(why);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        raised = flag.changed.wait_timeout(raised, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
    }
}
