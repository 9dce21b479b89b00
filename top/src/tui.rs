//! The live view in a real terminal: an RAII guard that restores the terminal (also on panic),
//! a thread reading keys, a task polling the source, and the loop that feeds both into the
//! [`App`] and redraws. All decisions live in `app`, `keys` and `render`; this is only wiring.

use std::time::Duration;

use anyhow::Context;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc;

use crate::app::App;
use crate::keys::handle_key;
use crate::render::render;
use crate::source::Source;

/// How often "disconnected for …" and other clock texts are redrawn without new data.
const CLOCK_TICK: Duration = Duration::from_secs(1);

/// How long the key thread waits for a key before checking whether the view has ended.
const KEY_POLL: Duration = Duration::from_millis(200);

/// Raw mode and the alternate screen while alive; the terminal as it was once dropped.
/// `ratatui::try_init` also installs a panic hook that restores the terminal before the panic
/// message prints, so a panic never leaves the shell in raw mode.
pub struct TerminalGuard {
    pub terminal: DefaultTerminal,
}

impl TerminalGuard {
    pub fn enter() -> anyhow::Result<TerminalGuard> {
        let terminal = ratatui::try_init().context("cannot switch the terminal to raw mode")?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

enum Message {
    Input(Event),
    InputFailed(String),
    Data(Result<crate::model::Snapshot, String>),
}

/// Runs the live view until the user quits.
pub async fn run(mut app: App, mut source: impl Source + 'static) -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let (sender, mut messages) = mpsc::channel::<Message>(64);

    let keys = sender.clone();
    std::thread::Builder::new()
        .name("bakery-top-keys".into())
        .spawn(move || read_keys(&keys))
        .context("cannot start the key reader")?;

    let refresh = app.refresh;
    let poller = tokio::spawn(async move {
        loop {
            let answer = source.snapshot().await.map_err(|e| e.to_string());
            if sender.send(Message::Data(answer)).await.is_err() {
                return;
            }
            tokio::time::sleep(refresh).await;
        }
    });

    let mut clock = tokio::time::interval(CLOCK_TICK);
    let outcome = loop {
        if let Err(error) = guard.terminal.draw(|frame| render(&app, frame)) {
            break Err(anyhow::Error::new(error).context("cannot draw"));
        }
        tokio::select! {
            message = messages.recv() => match message {
                Some(Message::Input(Event::Key(key))) => handle_key(&mut app, key),
                // A resize (or anything else) only needs the redraw at the top of the loop.
                Some(Message::Input(_)) => {}
                Some(Message::InputFailed(reason)) => break Err(anyhow::anyhow!("cannot read the terminal: {reason}")),
                Some(Message::Data(Ok(snapshot))) => app.on_snapshot(snapshot, crate::now_ms()),
                Some(Message::Data(Err(reason))) => app.on_source_error(reason, crate::now_ms()),
                None => break Ok(()),
            },
            _ = clock.tick() => app.tick(crate::now_ms()),
        }
        if app.quit {
            break Ok(());
        }
    };
    poller.abort();
    drop(guard);
    outcome
}

/// Blocks on the terminal and forwards its events until the view ends (the channel closes).
fn read_keys(sender: &mpsc::Sender<Message>) {
    while !sender.is_closed() {
        let ready = match event::poll(KEY_POLL) {
            Ok(ready) => ready,
            Err(error) => {
                let _ = sender.blocking_send(Message::InputFailed(error.to_string()));
                return;
            }
        };
        if !ready {
            continue;
        }
        let message = match event::read() {
            Ok(event) => Message::Input(event),
            Err(error) => Message::InputFailed(error.to_string()),
        };
        if sender.blocking_send(message).is_err() {
            return;
        }
    }
}
