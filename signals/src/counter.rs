//! How much a cumulative counter grew between two readings: a decrease is a reset (the source
//! restarted from zero), so the increase across it is the new value, as Prometheus' `increase()`
//! assumes.

/// The increase from `earlier` to `later`; after a reset, `later` itself.
pub fn increase(earlier: u64, later: u64) -> u64 {
    if later >= earlier { later - earlier } else { later }
}

/// The increase from `earlier` to `later`, or `None` when the counter went down: for rates shown
/// between two readings, where a reset leaves the span's true increase unknown.
pub fn increase_unless_reset(earlier: u64, later: u64) -> Option<u64> {
    later.checked_sub(earlier)
}

/// Per second over `seconds`; `None` for a span that is not positive.
pub fn per_second(increase: u64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| increase as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_and_resets() {
        let cases = [
            // (earlier, later, increase, unless reset)
            (100, 150, 50, Some(50)),
            (100, 100, 0, Some(0)),
            (100, 30, 30, None),
            (0, 0, 0, Some(0)),
            (u64::MAX - 1, u64::MAX, 1, Some(1)),
            (u64::MAX, 5, 5, None),
        ];
        for (earlier, later, expected, unless_reset) in cases {
            assert_eq!(increase(earlier, later), expected, "{earlier} -> {later}");
            assert_eq!(increase_unless_reset(earlier, later), unless_reset, "{earlier} -> {later}");
        }
    }

    #[test]
    fn rates_need_a_positive_span() {
        assert_eq!(per_second(500, 0.5), Some(1000.0));
        assert_eq!(per_second(500, 0.0), None);
        assert_eq!(per_second(500, -1.0), None);
    }
}
