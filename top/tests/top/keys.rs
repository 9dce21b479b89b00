//! Key handling against the made-up cluster (`bakery_top::made_up`): each binding changes the state
//! the way the help says.

use bakery_top::app::{App, Mode, SortKey, View};
use bakery_top::keys::handle_key;
use bakery_top::made_up;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::views::bakery_app;

fn press(app: &mut App, code: KeyCode) {
    handle_key(app, KeyEvent::new(code, KeyModifiers::NONE));
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn node_names(app: &App) -> Vec<String> {
    app.visible_nodes().iter().map(|n| n.name.clone()).collect()
}

#[test]
fn q_quits_and_ctrl_c_quits_even_while_typing_a_filter() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);

    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Char('/'));
    handle_key(&mut app, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.quit);
}

#[test]
fn tab_and_digits_switch_views() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Pods);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Windows);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Nodes);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.view, View::Windows);
    for (key, view) in [('2', View::Pods), ('1', View::Nodes), ('3', View::Windows)] {
        press(&mut app, KeyCode::Char(key));
        assert_eq!(app.view, view, "key {key}");
    }
}

#[test]
fn slash_filters_rows_and_esc_clears_the_filter() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode, Mode::Filter);
    type_text(&mut app, "WORKER-0x");
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "WORKER-0");
    assert_eq!(node_names(&app), ["worker-01", "worker-02"], "case-insensitive substring match");
    // Typed while filtering, q and s are text, not commands.
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "qs");
    assert!(!app.quit);
    assert_eq!(app.filter, "WORKER-0qs");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert_eq!(node_names(&app).len(), 5);
    // In normal mode Esc clears a kept filter too.
    app.set_filter("master".into());
    press(&mut app, KeyCode::Esc);
    assert_eq!(node_names(&app).len(), 5);
}

#[test]
fn s_cycles_the_sort_and_the_share_sort_puts_the_hog_first() {
    let mut app = bakery_app(5, 5, false);
    assert_eq!(node_names(&app)[0], "master-01", "by name first");
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort(View::Nodes), SortKey::Share);
    assert_eq!(node_names(&app)[0], "master-02");
    let cycle = SortKey::cycle(View::Nodes);
    for _ in 1..cycle.len() {
        press(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.sort(View::Nodes), SortKey::Name, "the cycle comes back round");
    // Sorting is per view.
    assert_eq!(app.sort(View::Pods), SortKey::Node);
}

#[test]
fn f_freezes_the_view_while_data_keeps_arriving() {
    let mut app = bakery_app(5, 0, false);
    press(&mut app, KeyCode::Char('f'));
    assert!(app.frozen);
    let hog = made_up::bakery(40, true);
    app.on_snapshot(hog.clone(), hog.taken_ms);
    assert!(app.alerts().is_empty(), "frozen: the hog is not shown yet");
    press(&mut app, KeyCode::Char('f'));
    assert!(!app.frozen);
    assert_eq!(app.alerts().len(), 1, "unfrozen: the latest data shows");
}

#[test]
fn enter_on_a_node_shows_its_pods_and_esc_goes_back() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.view, View::Pods);
    assert_eq!(app.pods_of_node.as_deref(), Some("master-02"));
    let nodes: Vec<String> = app.visible_pods().iter().map(|p| p.node.clone()).collect();
    assert!(!nodes.is_empty() && nodes.iter().all(|n| *n == "master-02"), "{nodes:?}");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.view, View::Nodes);
    assert_eq!(app.pods_of_node, None);
    assert!(app.visible_pods().len() > nodes.len());
}

#[test]
fn selection_stays_within_the_rows() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected(), 0);
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.selected(), 4, "five nodes");
    press(&mut app, KeyCode::Home);
    assert_eq!(app.selected(), 0);
    press(&mut app, KeyCode::End);
    app.set_filter("worker-01".into());
    assert_eq!(app.selected(), 0, "a filter that hides the selected row moves the selection");
}

#[test]
fn help_opens_with_a_question_mark_and_any_key_closes_it() {
    let mut app = bakery_app(3, 0, false);
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    press(&mut app, KeyCode::Char('2'));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.view, View::Nodes, "the key that closes help does nothing else");
}

#[test]
fn key_releases_are_ignored() {
    let mut app = bakery_app(3, 0, false);
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    handle_key(&mut app, release);
    assert!(!app.quit);
}
