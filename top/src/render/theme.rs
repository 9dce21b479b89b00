//! Styles by meaning (bad, warning, good, dim, ...), with or without colour. Without colour
//! (`NO_COLOR`, `--color never`) meaning is carried by bold, reverse and the text itself (marks
//! like `▲`, throttle letters, "disconnected"), never by colour alone.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
    /// The user's colours for some meanings (the config file's `[colors]`).
    pub palette: Palette,
}

impl Theme {
    /// The default colours, or none.
    pub fn plain(color: bool) -> Theme {
        Theme { color, palette: Palette::default() }
    }

    fn colored(self, color: Color) -> Style {
        if self.color { Style::new().fg(color) } else { Style::new() }
    }

    /// A hog, a disconnection, a throttled core.
    pub fn bad(self) -> Style {
        self.colored(self.palette.bad.unwrap_or(Color::Red)).add_modifier(Modifier::BOLD)
    }

    pub fn warning(self) -> Style {
        self.colored(self.palette.warning.unwrap_or(Color::Yellow))
    }

    pub fn good(self) -> Style {
        self.colored(self.palette.good.unwrap_or(Color::Green))
    }

    /// Secondary text: units, hints, unknown values.
    pub fn dim(self) -> Style {
        self.colored(self.palette.dim.unwrap_or(Color::DarkGray))
    }

    pub fn title(self) -> Style {
        self.colored(self.palette.title.unwrap_or(Color::Cyan)).add_modifier(Modifier::BOLD)
    }

    pub fn table_header(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn active_tab(self) -> Style {
        self.colored(self.palette.title.unwrap_or(Color::Cyan)).add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    pub fn alert_banner(self) -> Style {
        self.colored(self.palette.bad.unwrap_or(Color::Red))
    }

    /// The line of the node charted `index`-th. Red is left out: it means "bad" everywhere else.
    /// Without colour every line looks alike, so the charts label each line's end as well.
    pub fn series(self, index: usize) -> Style {
        const PALETTE: [Color; 8] = [
            Color::Cyan,
            Color::Yellow,
            Color::Magenta,
            Color::Green,
            Color::Blue,
            Color::LightCyan,
            Color::LightYellow,
            Color::LightMagenta,
        ];
        self.colored(PALETTE[index % PALETTE.len()])
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

/// Colours by meaning from the config file's `[colors]` table (`bad = "magenta"`, `good =
/// "#00ff87"`, `dim = "8"`): any name, `#rrggbb` or 0–255 index that a terminal colour can be; an
/// unset one keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Palette {
    #[serde(default, deserialize_with = "color")]
    pub bad: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    pub warning: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    pub good: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    pub dim: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    pub title: Option<Color>,
}

fn color<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Color>, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    text.parse::<Color>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a colour: use a name (red, light-blue, dark-gray), #rrggbb, or 0-255"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_colours_replace_the_defaults_only_where_colours_are_allowed() {
        let palette = Palette { bad: Some(Color::Magenta), ..Palette::default() };
        let theme = Theme { color: true, palette };
        assert_eq!(theme.bad().fg, Some(Color::Magenta));
        assert_eq!(theme.alert_banner().fg, Some(Color::Magenta));
        assert_eq!(theme.good().fg, Some(Color::Green), "an unset meaning keeps its default");
        let plain = Theme { color: false, palette };
        assert_eq!(plain.bad().fg, None, "NO_COLOR: no colour at all, the user's included");
        assert!(plain.bad().add_modifier.contains(Modifier::BOLD), "meaning still carried by bold");
    }
}
