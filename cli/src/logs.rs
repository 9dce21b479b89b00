//! The log set-up of every binary: `BAKERY_LOG` (tracing's env-filter syntax, `info` by default)
//! on stderr, so that `--json` output on stdout stays clean, in colour only on a terminal and
//! without `NO_COLOR`.

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKERY_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::env::var_os("NO_COLOR").is_some(), std::io::IsTerminal::is_terminal(&std::io::stderr())))
        .init();
}

/// Colour only on a terminal and only without `NO_COLOR` (set to anything, even empty).
fn colour(no_color: bool, terminal: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(false, true));
        assert!(!colour(true, true));
        assert!(!colour(false, false));
        assert!(!colour(true, false));
    }
}
