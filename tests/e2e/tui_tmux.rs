//! The live view in a real terminal: `bakery-top` in a tmux session (120x40) against a real
//! collector fed by a real agent. Keys switch views, filter and freeze; a collector restart shows
//! "disconnected" and then live data again; `q` leaves the terminal as it was (main screen,
//! canonical mode with echo). At 140x40, fed by an agent reading this machine (the fixture's CPU
//! counters never move, so it has no CPU line to draw), the nodes view charts the node's share
//! and CPU under the table. The screen is read with `tmux capture-pane -p`, every step waits on a
//! condition with a deadline.

use std::process::Command;
use std::time::Duration;

use bakery_lab::binaries::built_binary;
use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::{free_port, wait_until};

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

/// A tmux server of its own (`-L`), killed on drop, with one session of the given size.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `name` keeps the servers of tests running at once in this process apart.
    fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let tmux = Tmux { socket: format!("bakery-e2e-{}-{name}", std::process::id()) };
        let (width, height) = (width.to_string(), height.to_string());
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d", "-x", &width, "-y", &height])
            .args(["-s", "top"])
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
    let tmux = Tmux::start("keys", 120, 40, &command);

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

fn is_braille(c: char) -> bool {
    ('\u{2800}'..='\u{28FF}').contains(&c)
}

/// The charts are up under the table: both titles on a line below the table's header, braille
/// below them, and the node named under the legend's title.
fn charts_shown(screen: &str, node: &str) -> bool {
    let lines: Vec<&str> = screen.lines().collect();
    // Under the table, wherever the table ends: an alert banner above it moves everything down.
    let table = lines.iter().position(|l| l.starts_with("NODE "));
    let charts = lines.iter().position(|l| l.contains(" traffic share % · ") && l.contains(" CPU busy % · "));
    let legend = lines.iter().position(|l| l.contains(" legend "));
    match (table, charts) {
        (Some(table), Some(charts)) if charts > table => {
            lines[charts + 1..].iter().flat_map(|l| l.chars()).any(is_braille)
                && legend.is_some_and(|at| lines[at + 1..].iter().any(|l| l.contains(node)))
        }
        _ => false,
    }
}

/// The node name the agent on this machine reports.
const HOST_NODE: &str = "host-01";

/// A real collector (no auth, no Kubernetes) fed by a real agent reading this machine's `/proc`
/// and `/sys` every 250 ms, whose CPU moves; both killed on drop.
struct HostCollector {
    port: u16,
    _work: tempfile::TempDir,
    _collector: Process,
    _agent: Process,
}

impl HostCollector {
    fn start() -> HostCollector {
        let work = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let (ready, log) = (work.path().join("ready"), work.path().join("collector.log"));
        let collector = Spawn::new("the collector", built_binary("bakery-collector", "bakery-collector").unwrap())
            .args(["--insecure-no-auth", "--no-kubernetes", "--no-auto-windows"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .output(Output::Log(log.clone()))
            .start()
            .unwrap();
        wait_until("the collector's ready file", SCREEN_WAIT, || ready.exists())
            .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
        let agent = Spawn::new("the agent", built_binary("bakery-agent", "bakery-agent").unwrap())
            .args(["--collector", &format!("http://127.0.0.1:{port}"), "--insecure-no-auth"])
            .args(["--node-name", HOST_NODE, "--interval", "250ms"])
            .arg("--spool-dir")
            .arg(work.path().join("spool"))
            .output(Output::Log(work.path().join("agent.log")))
            .start()
            .unwrap();
        HostCollector { port, _work: work, _collector: collector, _agent: agent }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[test]
fn the_live_view_at_140x40_charts_the_nodes_share_and_cpu_under_the_table() {
    require_tmux();
    let live = HostCollector::start();
    let top = built_binary("bakery-top", "bakery-top").unwrap();
    let command = format!("{} --collector {}; sleep 600", top.display(), live.url());
    let tmux = Tmux::start("charts", 140, 40, &command);

    let screen = tmux.wait_screen("the charts with braille in the lower half and the node in the legend", |s| {
        s.contains("● connected") && charts_shown(s, HOST_NODE)
    });
    assert!(screen.contains("NODE") && screen.contains(&format!(" {HOST_NODE} ")), "the table stays: {screen}");
    assert!(screen.contains("last 5m"), "no load-test window: the last minutes: {screen}");
    tmux.keys(&["q"]);
}
