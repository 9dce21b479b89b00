//! The wall clock, Unix epoch milliseconds: what samples are stamped with and receive times are
//! measured in.

/// Now, Unix epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2025() {
        assert!(super::now_ms() > 1_735_689_600_000);
    }
}
