//! Numbers to short text for table cells: byte rates, sizes, percentages, frequencies, times,
//! share bars and text sparklines. Pure, shared by the views and the `--once` output.

use crate::model::{Frequency, Share, ThrottleMark};

/// Shown where a value is unknown (no signal, or no second sample yet).
pub const UNKNOWN: &str = "-";

/// Bytes per second with decimal prefixes, as network rates are quoted ("12.3M").
pub fn rate(bytes_per_second: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut value = bytes_per_second.max(0.0);
    let mut unit = 0;
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 99.95 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Bytes with binary prefixes, as memory is quoted ("512M", "3.1G").
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1023.5 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 99.95 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Used over total in the total's unit ("3.1/7.9G", "12/24G"): at most 8 characters up to 99G.
pub fn memory(used: u64, total: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let gib = |bytes: u64| {
        let value = bytes as f64 / GIB;
        if value >= 9.95 { format!("{value:.0}") } else { format!("{value:.1}") }
    };
    if total as f64 >= GIB {
        format!("{}/{}G", gib(used), gib(total))
    } else {
        format!("{}/{}", size(used), size(total))
    }
}

pub fn percent(value: f64) -> String {
    format!("{:.0}%", value)
}

/// Current over maximum in GHz ("1.5/2.4G").
pub fn frequency(f: &Frequency) -> String {
    format!("{:.1}/{:.1}G", f.current_khz as f64 / 1e6, f.max_khz as f64 / 1e6)
}

/// One letter per throttle condition active now (help lists them): T throttled, C frequency
/// capped, S soft temperature limit, V under-voltage. Empty when none.
pub fn throttle_letters(mark: &ThrottleMark) -> String {
    [(mark.throttled, 'T'), (mark.frequency_capped, 'C'), (mark.soft_temperature_limit, 'S'), (mark.under_voltage, 'V')]
        .into_iter()
        .filter_map(|(on, letter)| on.then_some(letter))
        .collect()
}

/// `HH:MM:SS` UTC of a Unix epoch millisecond time.
pub fn clock(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(11..19).unwrap_or(&text).to_string()
}

/// A short duration ("12s", "3m05s", "2h10m").
pub fn elapsed(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// A bar `width` cells wide filled to the observed share (in eighths of a cell), with `│` at the
/// expected share, so a hog reads as a bar past its marker.
pub fn share_bar(share: &Share, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let eighths = (share.observed.clamp(0.0, 1.0) * (width * 8) as f64).round() as usize;
    let mut cells: Vec<char> = (0..width)
        .map(|i| {
            let filled = eighths.saturating_sub(i * 8).min(8);
            if filled == 8 { '█' } else { EIGHTHS[filled] }
        })
        .collect();
    if cells.iter().all(|c| *c == ' ') {
        cells.iter_mut().for_each(|c| *c = '·');
    }
    let marker = ((share.expected.clamp(0.0, 1.0) * width as f64).round() as usize).min(width - 1);
    cells[marker] = '│';
    cells.into_iter().collect()
}

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a text sparkline, scaled to `max` (or to the largest value when
/// `max` is `None`).
pub fn sparkline<'a>(
    values: impl DoubleEndedIterator<Item = &'a f64> + ExactSizeIterator,
    width: usize,
    max: Option<f64>,
) -> String {
    let skip = values.len().saturating_sub(width);
    let shown: Vec<f64> = values.skip(skip).copied().collect();
    let top = max.unwrap_or_else(|| shown.iter().copied().fold(0.0, f64::max));
    shown
        .iter()
        .map(|v| {
            if top <= 0.0 {
                LEVELS[0]
            } else {
                let level = (v / top * (LEVELS.len() - 1) as f64).round().clamp(0.0, (LEVELS.len() - 1) as f64);
                LEVELS[level as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_decimal_prefixes_and_three_significant_digits() {
        let cases = [
            (0.0, "0"),
            (999.0, "999"),
            (1_000.0, "1.0k"),
            (12_345.0, "12.3k"),
            (123_456.0, "123k"),
            (12_300_000.0, "12.3M"),
        ];
        for (input, expected) in cases {
            assert_eq!(rate(input), expected, "{input}");
        }
    }

    #[test]
    fn sizes_use_binary_prefixes() {
        assert_eq!(size(512), "512B");
        assert_eq!(size(120 << 20), "120M");
        assert_eq!(size(3 << 30), "3.0G");
        assert_eq!(memory(3 << 30, 8 << 30), "3.0/8.0G");
        assert_eq!(memory(700 << 20, 47 << 29), "0.7/24G");
        assert_eq!(memory(12 << 30, 16 << 30), "12/16G");
    }

    #[test]
    fn throttle_letters_name_each_active_condition() {
        let mark = ThrottleMark { throttled: true, under_voltage: true, ..ThrottleMark::default() };
        assert_eq!(throttle_letters(&mark), "TV");
        assert_eq!(throttle_letters(&ThrottleMark::default()), "");
    }

    #[test]
    fn the_share_bar_fills_to_the_observed_share_and_marks_the_expected_one() {
        assert_eq!(share_bar(&Share { observed: 0.5, expected: 0.25 }, 8), "██│█    ");
        assert_eq!(share_bar(&Share { observed: 0.0, expected: 0.5 }, 4), "··│·");
        assert_eq!(share_bar(&Share { observed: 1.0, expected: 1.0 }, 4), "███│");
    }

    #[test]
    fn sparklines_show_the_latest_points_scaled_to_the_maximum() {
        let values = [0.0, 50.0, 100.0, 100.0];
        assert_eq!(sparkline(values.iter(), 3, Some(100.0)), "▅██");
        assert_eq!(sparkline(values.iter(), 10, None), "▁▅██");
    }

    #[test]
    fn times_are_utc_clock_and_short_durations() {
        assert_eq!(clock(1_790_000_000_000), "14:13:20");
        assert_eq!(elapsed(5_400), "5s");
        assert_eq!(elapsed(185_000), "3m05s");
        assert_eq!(elapsed(7_800_000), "2h10m");
    }
}
