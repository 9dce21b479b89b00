//! Styles by meaning (bad, warning, good, dim, ...), with or without colour. Without colour
//! (`NO_COLOR`, `--color never`) meaning is carried by bold, reverse and the text itself (marks
//! like `▲`, throttle letters, "disconnected"), never by colour alone.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn colored(self, color: Color) -> Style {
        if self.color { Style::new().fg(color) } else { Style::new() }
    }

    /// A hog, a disconnection, a throttled core.
    pub fn bad(self) -> Style {
        self.colored(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warning(self) -> Style {
        self.colored(Color::Yellow)
    }

    pub fn good(self) -> Style {
        self.colored(Color::Green)
    }

    /// Secondary text: units, hints, unknown values.
    pub fn dim(self) -> Style {
        if self.color { Style::new().fg(Color::DarkGray) } else { Style::new() }
    }

    pub fn title(self) -> Style {
        self.colored(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn table_header(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn active_tab(self) -> Style {
        self.colored(Color::Cyan).add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    pub fn alert_banner(self) -> Style {
        self.colored(Color::Red)
    }

    /// A value by how alarming it is: above `bad` is bad, above `warning` a warning.
    pub fn level(self, value: f64, warning: f64, bad: f64) -> Style {
        if value >= bad {
            self.bad()
        } else if value >= warning {
            self.warning()
        } else {
            Style::new()
        }
    }
}
