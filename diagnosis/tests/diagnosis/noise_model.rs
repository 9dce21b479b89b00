//! The noise model against simulation: random spreads of keep-alive connections are flagged at the
//! rate the bound promises, few connections pinned to one pod are reported as pinning, and many
//! connections leave no room for a real skew to hide.

use bakery_diagnosis::fixture::{Connections, Phase, SplitMix64};
use bakery_diagnosis::noise::traffic_band;
use bakery_diagnosis::{Cause, Config};

use crate::support::{load, replay};

/// Draws `c` connections, each to one of `k` endpoints uniformly (kube-proxy's random choice).
fn spread(c: u32, k: usize, rng: &mut SplitMix64) -> Vec<u32> {
    let mut counts = vec![0; k];
    for _ in 0..c {
        counts[rng.below(k as u64) as usize] += 1;
    }
    counts
}

#[test]
fn ordinary_random_spread_of_50_connections_is_flagged_at_most_at_the_promised_rate() {
    let config = Config::default();
    let band = traffic_band(50, 1, 3, 3, &config.traffic);
    let mut rng = SplitMix64::new(7);
    let draws = 20_000;
    let (mut flagged, mut max_over_mean_sum) = (0, 0.0);
    for _ in 0..draws {
        let counts = spread(50, 3, &mut rng);
        let max = f64::from(*counts.iter().max().expect("three pods"));
        let normalised = max / (50.0 / 3.0);
        max_over_mean_sum += normalised;
        if normalised >= band.enter {
            flagged += 1;
        }
    }
    let mean = max_over_mean_sum / f64::from(draws);
    // The simulation agrees with the Monte-Carlo mean of max/mean for 50 connections on 3 pods (1.21) ...
    assert!((mean - 1.21).abs() < 0.02, "mean max/mean {mean}");
    // ... and the bound flags at most the promised family-wise rate of ordinary runs: alpha x 20,000
    // draws is 2 expected flags at most; 10 leaves sampling slack (P(more) < 1e-4 at a mean of 2).
    let expected = config.traffic.alpha * f64::from(draws);
    assert!(
        f64::from(flagged) <= (5.0 * expected).max(10.0),
        "{flagged} of {draws} random spreads flagged at {}",
        band.enter
    );
}

#[test]
fn at_four_connections_three_or_four_on_one_pod_are_flagged_two_never() {
    let band = traffic_band(4, 1, 3, 3, &Config::default().traffic);
    for a in 0..=4_u32 {
        for b in 0..=(4 - a) {
            let counts = [a, b, 4 - a - b];
            let max = *counts.iter().max().expect("three pods");
            let flagged = f64::from(max) / (4.0 / 3.0) >= band.enter;
            assert_eq!(flagged, max >= 3, "{counts:?}");
        }
    }
}

#[test]
fn at_200_connections_a_moderate_skew_is_not_hidden_by_noise() {
    let band = traffic_band(200, 1, 3, 3, &Config::default().traffic);
    assert!(band.enter < 1.5, "{band:?}");
    // 100 of 200 on one pod (1.50x) is beyond chance; 72 of 200 (1.08x) is ordinary.
    assert!(100.0 / (200.0 / 3.0) >= band.enter, "{band:?}");
    assert!(72.0 / (200.0 / 3.0) < band.enter);
}

/// Replays the pinning fixture with `connections` from 12 s to 26 s; returns the verdicts raised on
/// master-02 (cause, highest confidence).
fn pinned(connections: Vec<u32>) -> Vec<(Cause, f64)> {
    let mut fixture = load("keepalive-4-connection-pinning");
    fixture.phases[0] = Phase {
        from_s: 12.0,
        until_s: 26.0,
        requests_per_s: None,
        connections: Some(Connections::Placed(connections)),
        entry: None,
        announcement: None,
    };
    let ticks = fixture.ticks().expect("valid");
    let mut best: Vec<(Cause, f64)> = Vec::new();
    for e in replay(&ticks, &Config::default()) {
        for v in e.verdicts.iter().filter(|v| v.node == "master-02") {
            match best.iter_mut().find(|(c, _)| *c == v.cause) {
                Some((_, conf)) => *conf = conf.max(v.confidence),
                None => best.push((v.cause, v.confidence)),
            }
        }
    }
    best
}

#[test]
fn all_four_connections_on_one_pod_is_still_pinning_but_less_certain() {
    // 4 of 4 on one pod happens by chance in 1 run of 27 (3/81): placement is still compatible with
    // chance, so the cause is pinning, with the caveat that affinity cannot be excluded yet.
    let three = pinned(vec![3, 1, 0]);
    let four = pinned(vec![4, 0, 0]);
    assert_eq!(three.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [Cause::ConnectionPinning]);
    assert_eq!(four.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [Cause::ConnectionPinning]);
    assert!(four[0].1 < 0.9 && four[0].1 >= 0.5, "{four:?}");
}

#[test]
fn fifty_connections_all_on_one_pod_are_not_chance() {
    // With 50 connections, 50 on one pod cannot be chance: placement was decided (affinity, Local).
    let fifty = pinned_fifty();
    assert_eq!(fifty, [Cause::PodConcentration]);
}

fn pinned_fifty() -> Vec<Cause> {
    let mut fixture = load("keepalive-50-random-spread");
    fixture.phases.push(Phase {
        from_s: 12.0,
        until_s: 26.0,
        requests_per_s: None,
        connections: Some(Connections::Placed(vec![50, 0, 0])),
        entry: None,
        announcement: None,
    });
    let ticks = fixture.ticks().expect("valid");
    let mut causes: Vec<Cause> =
        replay(&ticks, &Config::default()).iter().flat_map(|e| e.changes.iter().map(|c| c.cause)).collect();
    causes.dedup();
    causes
}
