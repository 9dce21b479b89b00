//! The detector's contract with the collector: ticks read back from JSON, malformed ticks are refused
//! without disturbing the state, and a node that leaves clears its verdicts at once.

use bakery_diagnosis::{ChangeKind, Config, Detector, Error, Tick};

use crate::support::load;

fn pinning_ticks() -> Vec<Tick> {
    load("keepalive-4-connection-pinning").ticks().expect("valid")
}

#[test]
fn ticks_round_trip_through_json() {
    let ticks = pinning_ticks();
    let json = serde_json::to_string(&ticks[5]).expect("serialises");
    let back: Tick = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, ticks[5]);
}

#[test]
fn malformed_ticks_are_refused_and_change_nothing() {
    let ticks = pinning_ticks();
    let mut detector = Detector::new(Config::default()).expect("valid");
    for tick in &ticks[..60] {
        detector.observe(tick).expect("well-formed");
    }
    let mut reference = detector.clone();

    let mut duplicate_node = ticks[60].clone();
    duplicate_node.nodes.push(duplicate_node.nodes[0].clone());
    assert_eq!(detector.observe(&duplicate_node), Err(Error::DuplicateNode("master-01".into())));

    let mut duplicate_pod = ticks[60].clone();
    let pod = duplicate_pod.nodes[1].pods[0].clone();
    duplicate_pod.nodes[1].pods.push(pod);
    assert!(matches!(detector.observe(&duplicate_pod), Err(Error::DuplicatePod { .. })));

    assert!(matches!(detector.observe(&ticks[10]), Err(Error::TimeWentBackwards { .. })));

    // After the refusals the detector carries on exactly as one that never saw them.
    for tick in &ticks[60..] {
        assert_eq!(detector.observe(tick).expect("well-formed"), reference.observe(tick).expect("well-formed"));
    }
}

#[test]
fn a_node_that_leaves_clears_its_verdicts_at_once() {
    let ticks = pinning_ticks();
    let mut detector = Detector::new(Config::default()).expect("valid");
    let hog = ticks.iter().position(|t| t.timestamp_ms >= ticks[0].timestamp_ms + 20_000).expect("20 s in");
    for tick in &ticks[..hog] {
        detector.observe(tick).expect("well-formed");
    }
    let mut gone = ticks[hog].clone();
    gone.nodes.retain(|n| n.name != "master-02");
    let evaluation = detector.observe(&gone).expect("well-formed");
    assert!(evaluation.verdicts.iter().all(|v| v.node != "master-02"));
    assert!(evaluation.changes.iter().any(|c| c.node == "master-02" && c.change == ChangeKind::Cleared));
}

#[test]
fn configuration_is_checked() {
    let config = Config { enter_after: 0, ..Config::default() };
    assert!(matches!(Detector::new(config), Err(Error::Config(_))));
    let config: Config = toml::from_str("enter_after = 4\n[traffic]\nfloor = 1.3\n").expect("partial config");
    assert_eq!((config.enter_after, config.traffic.floor, config.exit_after), (4, 1.3, 8));
}
