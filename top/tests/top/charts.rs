//! The nodes view's charts on the made-up cluster at 140x40, read from the drawn buffer.

use bakery_top::app::App;
use bakery_top::made_up;
use bakery_top::render::render;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use crate::views::bakery_app;

fn buffer(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    terminal.backend().buffer().clone()
}

fn is_braille(symbol: &str) -> bool {
    symbol.chars().next().is_some_and(|c| ('\u{2800}'..='\u{28FF}').contains(&c))
}

/// Row `y` as text, one character a cell (every symbol drawn here is one column wide).
fn row(buffer: &Buffer, y: u16) -> String {
    (0..buffer.area.width).map(|x| buffer[(x, y)].symbol().chars().next().unwrap_or(' ')).collect()
}

/// Where `text` first starts, as a cell position.
fn find(buffer: &Buffer, text: &str) -> Option<(u16, u16)> {
    (0..buffer.area.height).find_map(|y| {
        let line = row(buffer, y);
        let at = line.find(text)?;
        Some((line[..at].chars().count() as u16, y))
    })
}

#[test]
fn charts_at_140x40_show_titles_legend_and_braille_in_the_lower_half() {
    let app = bakery_app(20, 10, false);
    let buffer = buffer(&app, 140, 40);
    let screen = (0..40).map(|y| row(&buffer, y)).collect::<Vec<_>>().join("\n");
    assert!(screen.contains(" traffic share % · window \"oha -c 50 -z 60s\" "), "{screen}");
    assert!(screen.contains(" CPU busy % · window \"oha -c 50 -z 60s\" "), "{screen}");
    assert!(screen.contains(" dotted: expected share "), "{screen}");
    assert!(screen.contains(" legend "), "{screen}");
    assert!(screen.contains("2 ▲master-02  72/33%  91%"), "the legend: tag, mark, name, share, CPU: {screen}");
    assert!(screen.contains("4  worker-01  14/33%  29%"), "{screen}");
    let braille_below_half =
        (20..40).flat_map(|y| (0..140).map(move |x| (x, y))).any(|p| is_braille(buffer[p].symbol()));
    assert!(braille_below_half, "braille cells in the lower half: {screen}");
    assert!(screen.contains("NODE") && screen.contains("▲master-02  control-plane"), "the table is kept: {screen}");
    insta::assert_snapshot!("charts_hog_140x40", screen);
}

#[test]
fn without_a_window_the_charts_cover_the_last_minutes_and_tags_tell_lines_apart_without_colour() {
    let app = bakery_app(30, 0, false);
    let buffer = buffer(&app, 140, 40);
    let screen = (0..40).map(|y| row(&buffer, y)).collect::<Vec<_>>().join("\n");
    assert!(screen.contains(" traffic share % · last 5m ") && screen.contains(" CPU busy % · last 5m "), "{screen}");
    // Calm: master-02 and both workers at their third of the traffic, the masters without an
    // endpoint at none; where lines end together their tags share the row.
    assert!(screen.contains(" 2,4,5"), "{screen}");
    assert!(screen.contains(" 1,3"), "{screen}");
    let (_, shared) = find(&buffer, " 2,4,5").unwrap();
    let (_, none) = find(&buffer, " 1,3").unwrap();
    assert!(shared < none, "a third of the traffic is drawn above none");
    insta::assert_snapshot!("charts_calm_140x40", screen);
}

/// The lowest row (topmost on screen) of `colour`'s braille cells in column `x` of the share chart.
fn top_of(buffer: &Buffer, x: u16, rows: std::ops::Range<u16>, colour: Color) -> Option<u16> {
    rows.clone().find(|&y| is_braille(buffer[(x, y)].symbol()) && buffer[(x, y)].fg == colour)
}

#[test]
fn a_rising_share_is_drawn_higher_at_the_right_than_at_the_left() {
    // master-02 goes from a third of the traffic to 72 %; selected, it is drawn over the others.
    let mut app = bakery_app(20, 10, true);
    app.move_selection(1);
    let buffer = buffer(&app, 140, 40);
    let (title_x, top) = find(&buffer, " traffic share % ").expect("the share chart");
    let left = title_x - 1;
    let right = (title_x..140).find(|&x| buffer[(x, top)].symbol() == "┐").expect("the chart's corner");
    let bottom = (top + 1..40).find(|&y| buffer[(left, y)].symbol() == "└").expect("the chart's bottom");
    // The node's colour, read from its tag in the legend.
    let (name_x, name_y) = find(&buffer, "master-02  72/33%").expect("master-02 in the legend");
    let colour = buffer[(name_x - 3, name_y)].fg;
    assert_ne!(colour, Color::Reset, "coloured lines when colours are allowed");
    let columns: Vec<u16> =
        (left + 1..right).filter(|&x| top_of(&buffer, x, top + 1..bottom, colour).is_some()).collect();
    let (first, last) = (columns.first().copied().unwrap(), columns.last().copied().unwrap());
    assert!(last - first > 20, "the line spans the chart ({first}..{last})");
    let (at_left, at_right) = (
        top_of(&buffer, first, top + 1..bottom, colour).unwrap(),
        top_of(&buffer, last, top + 1..bottom, colour).unwrap(),
    );
    assert!(at_right < at_left, "higher (a smaller row) at the right: row {at_right} against {at_left} at the left");
}

#[test]
fn a_frozen_view_freezes_the_charts() {
    let mut app = bakery_app(20, 10, false);
    let lower = |app: &App| {
        let buffer = buffer(app, 140, 40);
        (20..40).map(|y| row(&buffer, y)).collect::<Vec<_>>()
    };
    let before = lower(&app);
    app.toggle_freeze();
    for frame in 30..40 {
        let snapshot = made_up::bakery(frame, false);
        let now = snapshot.taken_ms + 200;
        app.on_snapshot(snapshot, now);
    }
    assert_eq!(lower(&app), before, "frozen: the charts do not move");
    app.toggle_freeze();
    assert_ne!(lower(&app), before, "unfrozen: the held data is charted");
}

#[test]
fn small_terminals_keep_the_table_and_leave_the_charts_out() {
    let app = bakery_app(20, 10, false);
    for (width, height) in [(80, 24), (140, 20)] {
        let buffer = buffer(&app, width, height);
        let screen = (0..height).map(|y| row(&buffer, y)).collect::<Vec<_>>().join("\n");
        assert!(screen.contains("NODE") && screen.contains("master-02"), "{width}x{height}: {screen}");
        assert!(!screen.contains("traffic share %"), "{width}x{height}: no room for charts: {screen}");
        assert!(!buffer.content().iter().any(|c| is_braille(c.symbol())), "{width}x{height}");
    }
}
