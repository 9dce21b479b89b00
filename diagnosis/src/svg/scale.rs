//! Where time and values land on the chart: the time axis the panels share, and each one's value axis.

use crate::report::WindowReport;

/// Maps a tick's time to x, the same in every panel.
pub(super) struct TimeScale {
    t0: i64,
    t1: i64,
    left: f64,
    right: f64,
    window_start_ms: i64,
}

impl TimeScale {
    /// From the first to the last tick of the replay, or the window if it is wider.
    pub fn of(report: &WindowReport, left: f64, right: f64) -> Self {
        let times = report.series.iter().flat_map(|s| s.points.iter().map(|p| p.t_ms));
        let t0 = times.clone().min().unwrap_or(report.window.start_ms).min(report.window.start_ms);
        let t1 = times.max().unwrap_or(report.window.end_ms).max(report.window.end_ms);
        Self { t0, t1, left, right, window_start_ms: report.window.start_ms }
    }

    pub fn x(&self, t_ms: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        self.left + (t_ms - self.t0) as f64 / span * (self.right - self.left)
    }

    /// Ticks at round seconds from the window's start (at most about ten), with their labels.
    pub fn ticks(&self) -> Vec<(i64, String)> {
        let seconds = (self.t1 - self.t0) as f64 / 1000.0;
        let step_s = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
            .into_iter()
            .find(|s| seconds / s <= 10.0)
            .unwrap_or(1200.0);
        let first = ((self.t0 - self.window_start_ms) as f64 / 1000.0 / step_s).ceil() as i64;
        let last = ((self.t1 - self.window_start_ms) as f64 / 1000.0 / step_s).floor() as i64;
        (first..=last)
            .map(|i| {
                let at_s = i as f64 * step_s;
                (self.window_start_ms + (at_s * 1000.0) as i64, format!("{at_s:+.0} s"))
            })
            .collect()
    }
}

/// How a panel's value axis is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AxisStyle {
    /// Shares and fractions: from 0 to at least 1 in quarters, so that panels compare at a glance.
    Fraction,
    /// From 0 to a round value above the highest.
    FromZero,
    /// Round values around the data (temperatures, whose zero says nothing).
    AroundData,
}

/// One panel's value axis: values from `lo` to `hi` drawn from `bottom` up to `top`.
pub(super) struct ValueAxis {
    lo: f64,
    hi: f64,
    step: f64,
    top: f64,
    bottom: f64,
}

impl ValueAxis {
    /// The axis for `values` from `bottom` up to `top`, with `headroom` pixels below `top` left clear
    /// of data (for labels).
    pub fn fit(
        values: impl IntoIterator<Item = f64>,
        style: AxisStyle,
        (top, bottom): (f64, f64),
        headroom: f64,
    ) -> Self {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for value in values.into_iter().filter(|v| v.is_finite()) {
            min = min.min(value);
            max = max.max(value);
        }
        let (lo, hi, step) = match style {
            _ if min > max => (0.0, 1.0, 0.25),
            AxisStyle::Fraction => {
                let hi = ((max.max(1.0) * 4.0).ceil() / 4.0).max(1.0);
                (0.0, hi, if hi > 1.5 { 0.5 } else { 0.25 })
            }
            AxisStyle::FromZero => {
                let step = nice_step(max.max(0.0) / 4.0);
                (0.0, (max.max(0.0) / step).ceil().max(1.0) * step, step)
            }
            AxisStyle::AroundData => {
                let step = nice_step(((max - min) / 4.0).max(max.abs() / 40.0));
                let lo = (min / step).floor() * step;
                (lo, ((max / step).ceil() * step).max(lo + step), step)
            }
        };
        let mut axis = Self { lo, hi, step, top, bottom };
        // Raise the top by whole steps until the data stay below the headroom (or the plot is too
        // short for it to matter).
        while max >= min && headroom < (bottom - top) / 2.0 && axis.y(max) < top + headroom {
            axis.hi += axis.step;
        }
        axis
    }

    pub fn y(&self, value: f64) -> f64 {
        self.bottom - (value - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)
    }

    /// Every tick from the bottom up, with its label.
    pub fn ticks(&self) -> Vec<(f64, String)> {
        let (divisor, suffix) = match self.lo.abs().max(self.hi.abs()) {
            m if m >= 1e9 => (1e9, "G"),
            m if m >= 1e6 => (1e6, "M"),
            m if m >= 1e4 => (1e3, "k"),
            _ => (1.0, ""),
        };
        let scaled_step = self.step / divisor;
        let decimals = (0..6)
            .find(|&d| {
                let shifted = scaled_step * 10_f64.powi(d);
                (shifted - shifted.round()).abs() < 1e-6
            })
            .unwrap_or(6) as usize;
        let count = ((self.hi - self.lo) / self.step + 1e-9).floor() as i64;
        (0..=count)
            .map(|i| {
                let value = self.lo + i as f64 * self.step;
                let label =
                    if value == 0.0 { "0".to_string() } else { format!("{:.decimals$}{suffix}", value / divisor) };
                (value, label)
            })
            .collect()
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, the smallest at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.25;
    }
    let magnitude = 10_f64.powf(raw.log10().floor());
    let mantissa = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().find(|&n| mantissa <= n + 1e-9).unwrap_or(10.0);
    nice * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[f64], style: AxisStyle) -> Vec<String> {
        ValueAxis::fit(values.iter().copied(), style, (0.0, 100.0), 0.0).ticks().into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(labels(&[0.3, 0.7], AxisStyle::Fraction), ["0", "0.25", "0.50", "0.75", "1.00"]);
        assert_eq!(labels(&[3.41e6], AxisStyle::FromZero), ["0", "1M", "2M", "3M", "4M"]);
        assert_eq!(labels(&[0.05, 1.1], AxisStyle::FromZero), ["0", "0.5", "1.0", "1.5"]);
        assert_eq!(labels(&[55.0, 84.0], AxisStyle::AroundData), ["50", "60", "70", "80", "90"]);
        assert_eq!(labels(&[55.0, 55.0], AxisStyle::AroundData), ["54", "56"]);
        assert_eq!(labels(&[], AxisStyle::FromZero), ["0", "0.25", "0.50", "0.75", "1.00"]);
        assert_eq!(labels(&[0.0, 0.0], AxisStyle::FromZero), ["0", "0.25"]);
    }

    #[test]
    fn values_map_between_bottom_and_top() {
        let axis = ValueAxis::fit([0.5], AxisStyle::Fraction, (10.0, 110.0), 0.0);
        assert!((axis.y(0.0) - 110.0).abs() < 1e-9);
        assert!((axis.y(1.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn headroom_keeps_the_data_below_the_labels() {
        let axis = ValueAxis::fit([0.98], AxisStyle::Fraction, (0.0, 100.0), 15.0);
        assert!(axis.y(0.98) >= 15.0, "{}", axis.y(0.98));
        assert_eq!(axis.ticks().last().map(|t| t.1.clone()), Some("1.25".to_string()));
        let axis = ValueAxis::fit([3.9e6], AxisStyle::FromZero, (0.0, 100.0), 15.0);
        assert_eq!(axis.ticks().last().map(|t| t.1.clone()), Some("5M".to_string()));
    }
}
