//! Snapshot tests of the screens (ratatui `TestBackend` + insta): the nodes view calm and with a
//! hog, the pods view, help, the windows view, a lost collector, and a narrow 80x24 terminal;
//! `charts.rs` tests the charts under the table.
//! Review a changed screen with `cargo insta review` (or `INSTA_UPDATE=always`) and commit it.

use std::time::Duration;

use bakery_top::app::{App, Mode, View};
use bakery_top::made_up::{self, START_MS};
use bakery_top::render::render;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

/// The app after `calm` quiet seconds and then `hog` seconds of master-02 taking the traffic.
pub fn bakery_app(calm: u32, hog: u32, color: bool) -> App {
    let mut app = App::new("http://127.0.0.1:7431", Duration::from_secs(1), color, START_MS);
    for frame in 0..calm + hog {
        let snapshot = made_up::bakery(frame, frame >= calm);
        let now = snapshot.taken_ms + 200;
        app.on_snapshot(snapshot, now);
    }
    app
}

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    terminal
}

fn screen(app: &App, width: u16, height: u16) -> String {
    draw(app, width, height).backend().to_string()
}

#[test]
fn nodes_view_calm() {
    let app = bakery_app(30, 0, false);
    let screen = screen(&app, 120, 30);
    assert!(screen.contains("no hog flagged"));
    insta::assert_snapshot!("nodes_calm", screen);
}

#[test]
fn nodes_view_with_a_hog_alert() {
    let app = bakery_app(20, 10, false);
    let screen = screen(&app, 120, 30);
    assert!(screen.contains("▲ master-02 connection-pinning (86%)"), "the banner names the node and cause");
    assert!(screen.contains("next: rerun with `oha --disable-keepalive`"), "the banner gives the next step");
    assert!(screen.contains("72/33%"), "the share column shows observed against expected");
    insta::assert_snapshot!("nodes_hog", screen);
}

#[test]
fn pods_view() {
    let mut app = bakery_app(20, 10, false);
    app.set_view(View::Pods);
    let screen = screen(&app, 120, 30);
    assert!(screen.contains("wordpress-6d8f7c9b5-h7f4q") && screen.contains("deploy/wordpress"));
    insta::assert_snapshot!("pods", screen);
}

#[test]
fn pods_of_one_node_after_enter() {
    let mut app = bakery_app(20, 10, false);
    app.move_selection(1);
    app.drill_down();
    let screen = screen(&app, 120, 30);
    assert!(screen.contains("pods on master-02"));
    assert!(!screen.contains("worker-01"), "only master-02's pods are listed");
    insta::assert_snapshot!("pods_of_master_02", screen);
}

#[test]
fn help_overlay() {
    let mut app = bakery_app(30, 0, false);
    app.mode = Mode::Help;
    let screen = screen(&app, 100, 30);
    for key in ["q, Ctrl-C", "Tab, Shift-Tab", "Enter", "/", "s", "f"] {
        assert!(screen.contains(key), "help lists {key}");
    }
    insta::assert_snapshot!("help", screen);
}

#[test]
fn windows_view() {
    let mut app = bakery_app(20, 10, false);
    app.set_view(View::Windows);
    insta::assert_snapshot!("windows", screen(&app, 120, 20));
}

#[test]
fn a_collector_without_windows_alerts_or_pods_says_so() {
    let mut app = bakery_app(2, 0, false);
    if let Some(data) = app.data.as_mut() {
        data.windows = None;
        data.alerts = None;
    }
    app.set_view(View::Windows);
    let text = screen(&app, 100, 12);
    assert!(text.contains("does not serve load-test windows"), "{text}");
    app.set_view(View::Nodes);
    assert!(screen(&app, 100, 12).contains("verdicts: not served by this collector"));
    if let Some(data) = app.data.as_mut() {
        data.pods.clear();
    }
    app.set_view(View::Pods);
    assert!(screen(&app, 100, 12).contains("no pods reported"));
}

#[test]
fn narrow_80x24_terminal_with_a_hog() {
    let app = bakery_app(20, 10, false);
    let screen = screen(&app, 80, 24);
    for needed in ["master-02", "CPU%(si)", "SHARE", "MEM", "1.5/2.4G T", "next:"] {
        assert!(screen.contains(needed), "{needed} must fit in 80 columns");
    }
    insta::assert_snapshot!("narrow_80x24", screen);
}

#[test]
fn a_lost_collector_is_shown_and_the_last_data_kept() {
    let mut app = bakery_app(20, 10, false);
    let lost = START_MS + 31_000;
    app.on_source_error("tcp connect error: Connection refused", lost);
    app.tick(lost + 12_000);
    let screen = screen(&app, 120, 30);
    assert!(screen.contains("✕ disconnected since 14:13:51 UTC (12s), reconnecting"), "{screen}");
    assert!(screen.contains("master-02") && screen.contains("72/33%"), "the last data stays on screen");
    insta::assert_snapshot!("disconnected", screen);
}

#[test]
fn waiting_for_the_first_answer() {
    let app = App::new("http://127.0.0.1:7431", Duration::from_secs(1), false, START_MS);
    insta::assert_snapshot!("connecting", screen(&app, 80, 12));
}

#[test]
fn colours_only_when_allowed() {
    // The hog's name is red with colours; without (NO_COLOR, --color never) it is bold only.
    let find_hog = |terminal: &Terminal<TestBackend>| {
        let buffer = terminal.backend().buffer().clone();
        let area = buffer.area;
        (0..area.height)
            .flat_map(|y| (0..area.width).map(move |x| (x, y)))
            .find(|&(x, y)| buffer[(x, y)].symbol() == "▲" && buffer[(x + 1, y)].symbol() == "m" && x == 0 && y > 8)
            .map(|(x, y)| buffer[(x + 1, y)].style())
            .expect("the flagged row")
    };
    let coloured = find_hog(&draw(&bakery_app(20, 10, true), 120, 30));
    assert_eq!(coloured.fg, Some(Color::Red));
    let plain_terminal = draw(&bakery_app(20, 10, false), 120, 30);
    let plain = find_hog(&plain_terminal);
    assert_eq!(plain.fg.unwrap_or(Color::Reset), Color::Reset);
    assert!(plain.add_modifier.contains(ratatui::style::Modifier::BOLD), "still marked, by bold");
    let buffer = plain_terminal.backend().buffer();
    let any_colour =
        buffer.content().iter().any(|cell| !matches!(cell.fg, Color::Reset) || !matches!(cell.bg, Color::Reset));
    assert!(!any_colour, "without colours no cell has a colour");
}
