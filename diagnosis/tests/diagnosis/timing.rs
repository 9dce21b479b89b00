//! The 3 s flag budget at offsets the fixtures do not use: a hog that starts anywhere in the middle of a
//! window, not aligned to a sample, is flagged within 3 s of its start (measured on sample timestamps)
//! and clears once after it ends, with no other raise or clear.

use bakery_diagnosis::Config;
use bakery_diagnosis::fixture::Fixture;

use crate::fixtures::check;
use crate::support::{fixture_names, load};

/// Moves the hog of a fixture (everything that starts at `hog_start_s` or ends at `hog_end_s`).
fn shifted(mut s: Fixture, start: f64, end: f64) -> Fixture {
    let (old_start, old_end) = (s.expect.hog_start_s.expect("a hog"), s.expect.hog_end_s.expect("an end"));
    let moved = |from: &mut f64, until: &mut f64| {
        if *from == old_start {
            *from = start;
        } else if *from == old_end {
            *from = end;
        }
        if *until == old_end {
            *until = end;
        }
    };
    for p in &mut s.phases {
        moved(&mut p.from_s, &mut p.until_s);
    }
    for w in &mut s.host_work {
        moved(&mut w.from_s, &mut w.until_s);
    }
    for w in &mut s.pod_work {
        moved(&mut w.from_s, &mut w.until_s);
    }
    for e in &mut s.thermal {
        moved(&mut e.from_s, &mut e.until_s);
    }
    for e in &mut s.memory_pressure {
        moved(&mut e.from_s, &mut e.until_s);
    }
    s.expect.hog_start_s = Some(start);
    s.expect.hog_end_s = Some(end);
    s
}

#[test]
fn hogs_starting_between_samples_are_flagged_within_three_seconds_and_clear_once() {
    let hogs: Vec<Fixture> =
        fixture_names().iter().map(|n| load(n)).filter(|s| s.expect.hog_start_s.is_some()).collect();
    assert!(hogs.len() >= 7, "one timed hog per cause at least");
    for fixture in hogs {
        for (start, end) in [(9.1, 21.37), (13.6, 27.9), (15.85, 24.2)] {
            let moved = shifted(fixture.clone(), start, end);
            check(&moved, &Config::default());
        }
    }
}
