//! The live view in a real terminal: `bakery-top` in a tmux session (120x40) against a real
//! collector fed by a real agent. Keys switch views, filter and freeze; a collector restart shows
//! "disconnected" and then live data again; `q` leaves the terminal as it was (main screen,
//! canonical mode with echo). The screen is read with `tmux capture-pane -p`, every step waits on
//! a condition with a deadline.

use std::process::Command;
use std::time::Duration;

use bakery_lab::binaries::built_binary;
use bakery_lab::wait_until;

use crate::loadtest::LiveCollector;

const SCREEN_WAIT: Duration = Duration::from_secs(30);

/// tmux, installed with apt-get when missing and root; otherwise a clear failure.
fn require_tmux() {
    let found = || Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if found() {
        return;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    assert!(root, "this test needs tmux: install it (apt-get install tmux) or run the test as root");
    eprintln!("tmux is missing: apt-get install -y tmux ...");
    let status = Command::new("apt-get").args(["install", "-y", "tmux"]).status().expect("cannot run apt-get");
    assert!(status.success() && found(), "apt-get install -y tmux failed ({status}); install tmux to run this test");
}

/// A tmux server of its own (`-L`), killed on drop, with one 120x40 session.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let tmux = Tmux { socket: format!("bakery-e2e-{}", std::process::id()) };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", "-s", "top"])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn screen(&self) -> String {
        let output =
            Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "top"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn pane_flag(&self, format: &str) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "display-message", "-p", "-t", "top", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Sends keys as tmux names them ("q", "Enter", "Escape", "BSpace").
    fn keys(&self, keys: &[&str]) {
        let status =
            Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "top"]).args(keys).status().unwrap();
        assert!(status.success(), "tmux send-keys {keys:?}");
    }

    fn wait_screen(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        wait_until(what, SCREEN_WAIT, || condition(&self.screen()))
            .unwrap_or_else(|e| panic!("{e}\nscreen:\n{}", self.screen()));
        self.screen()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The detail line's `sample HH:MM:SS` of the selected node: it moves while data is live.
fn sample_time(screen: &str) -> Option<String> {
    let at = screen.find(" sample ")?;
    screen.get(at + 8..at + 16).map(str::to_owned)
}

#[test]
fn the_live_view_in_tmux_switches_filters_freezes_survives_a_collector_restart_and_restores_the_terminal() {
    require_tmux();
    let mut live = LiveCollector::start();
    let top = built_binary("bakery-top", "bakery-top").unwrap();
    // After bakery-top exits, the shell prints its exit code and the terminal modes it was left in.
    let command = format!(
        concat!(
            "{} --collector {}; echo EXITED-$?; ",
            "stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' '; echo; sleep 600"
        ),
        top.display(),
        live.url()
    );
    let tmux = Tmux::start(&command);

    let screen = tmux
        .wait_screen("the nodes view with the agent's node", |s| s.contains("● connected") && s.contains(" bare-01 "));
    assert!(screen.contains("NODE") && screen.contains("1 Nodes"), "{screen}");
    assert_eq!(tmux.pane_flag("#{alternate_on}"), "1", "the view runs on the alternate screen");

    tmux.keys(&["2"]);
    tmux.wait_screen("the pods view", |s| s.contains("NAMESPACE") && s.contains(" pods "));
    tmux.keys(&["3"]);
    tmux.wait_screen("the windows view", |s| s.contains("no load-test windows yet") && !s.contains("CPU%(si)"));
    tmux.keys(&["1"]);
    tmux.wait_screen("the nodes view again", |s| s.contains("CPU%(si)"));

    tmux.keys(&["/", "x", "y", "z", "Enter"]);
    tmux.wait_screen("a filter that hides the node", |s| s.contains("filter: xyz") && !s.contains(" bare-01 "));
    tmux.keys(&["/", "BSpace", "BSpace", "BSpace", "b", "a", "r", "e", "Enter"]);
    tmux.wait_screen("a filter that keeps it", |s| s.contains("filter: bare") && s.contains(" bare-01 "));

    tmux.keys(&["f"]);
    let frozen = tmux.wait_screen("the frozen view holding newer data", |s| s.contains("FROZEN (newer data held)"));
    let held = sample_time(&frozen).expect("a sample time on the frozen screen");
    assert_eq!(sample_time(&tmux.screen()).as_deref(), Some(held.as_str()), "frozen data does not move");
    tmux.keys(&["f"]);
    tmux.wait_screen("unfrozen, live again", |s| !s.contains("FROZEN") && sample_time(s).is_some_and(|t| t != held));

    live.kill_collector();
    let gone = tmux.wait_screen("disconnected", |s| s.contains("disconnected since"));
    assert!(gone.contains(" bare-01 "), "the last data stays on screen: {gone}");
    let last = sample_time(&gone).expect("the last sample time stays");
    live.spawn_collector();
    tmux.wait_screen("connected with new data after the restart", |s| {
        s.contains("● connected") && !s.contains("disconnected since") && sample_time(s).is_some_and(|t| t != last)
    });

    tmux.keys(&["q"]);
    let after = tmux.wait_screen("bakery-top to exit", |s| s.contains("EXITED-") && s.contains("icanon"));
    assert!(after.contains("EXITED-0"), "q exits 0: {after}");
    let modes = after.lines().find(|l| l.contains("icanon")).unwrap_or_default();
    assert!(modes.split_whitespace().any(|m| m == "icanon"), "canonical mode is back: {modes}");
    assert!(modes.split_whitespace().any(|m| m == "echo"), "echo is back: {modes}");
    assert_eq!(tmux.pane_flag("#{alternate_on}"), "0", "back on the main screen");
    assert_eq!(tmux.pane_flag("#{cursor_flag}"), "1", "the cursor is visible again");
}
