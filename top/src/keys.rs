//! Keys to state changes: a pure function from a key event to a change of [`App`], so every
//! binding is tested without a terminal. The help overlay lists the same bindings ([`BINDINGS`]).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{App, Mode, View};

/// Every binding as the help shows it: keys, then what they do.
pub const BINDINGS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("Tab, Shift-Tab", "next / previous view"),
    ("1 2 3", "nodes, pods, windows/reports"),
    ("Up/Down, j/k", "select a row (PgUp/PgDn, Home/End)"),
    ("Enter", "on a node: show its pods"),
    ("Esc", "back from a node's pods, or clear the filter"),
    ("/", "filter rows (Enter keeps it, Esc clears it)"),
    ("s", "cycle the sort order"),
    ("f", "freeze / unfreeze the view (data keeps arriving)"),
];

/// Rows a page key moves.
const PAGE: isize = 10;

/// Applies one key to the state.
pub fn handle_key(app: &mut App, key: KeyEvent) {
    // Terminals that report releases and repeats (Windows, kitty protocol) would act twice.
    if key.kind != KeyEventKind::Press {
        return;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return;
    }
    match app.mode {
        Mode::Help => app.mode = Mode::Normal,
        Mode::Filter => filter_key(app, key),
        Mode::Normal => normal_key(app, key),
    }
}

fn normal_key(app: &mut App, key: KeyEvent) {
    match key.code {
        KeyCode::Char('q') => app.quit = true,
        KeyCode::Char('?') => app.mode = Mode::Help,
        KeyCode::Char('/') => app.mode = Mode::Filter,
        KeyCode::Char('s') => app.cycle_sort(),
        KeyCode::Char('f') => app.toggle_freeze(),
        KeyCode::Tab => app.next_view(),
        KeyCode::BackTab => app.previous_view(),
        KeyCode::Char('1') => app.set_view(View::Nodes),
        KeyCode::Char('2') => app.set_view(View::Pods),
        KeyCode::Char('3') => app.set_view(View::Windows),
        KeyCode::Down | KeyCode::Char('j') => app.move_selection(1),
        KeyCode::Up | KeyCode::Char('k') => app.move_selection(-1),
        KeyCode::PageDown => app.move_selection(PAGE),
        KeyCode::PageUp => app.move_selection(-PAGE),
        KeyCode::Home | KeyCode::Char('g') => app.select_first(),
        KeyCode::End | KeyCode::Char('G') => app.select_last(),
        KeyCode::Enter => app.drill_down(),
        KeyCode::Esc => app.back(),
        _ => {}
    }
}

fn filter_key(app: &mut App, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => app.mode = Mode::Normal,
        KeyCode::Esc => {
            app.set_filter(String::new());
            app.mode = Mode::Normal;
        }
        KeyCode::Backspace => {
            let mut filter = app.filter.clone();
            filter.pop();
            app.set_filter(filter);
        }
        KeyCode::Char(c) => {
            let mut filter = app.filter.clone();
            filter.push(c);
            app.set_filter(filter);
        }
        _ => {}
    }
}
