//! The random campaign on the real cluster of namespaces (root): six scenarios generated from a
//! fixed seed, each run as `bakery-demo campaign` runs it (the demo's start, load and finish),
//! and every one right against the generator's own ground truth, with no false flag.
//!
//! Seed 57's first six cover a balanced cluster, memory pressure, the Local policy behind a
//! layer-2 announcer, a hot node, ClientIP affinity behind nginx and keep-alive pinning, over 3 to
//! 9 nodes, with nginx outside, nothing in front and Nginx Proxy Manager in the cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bakery_demo::campaign::generate::campaign;
use bakery_demo::campaign::truth::Rule;
use bakery_demo::campaign::{Summary, run_one, table};
use bakery_demo::cluster::leftovers;
use bakery_lab::require_root;

use crate::one_cluster::{ONE_CLUSTER, binaries};

const SEED: u64 = 57;
const COUNT: usize = 6;

#[test]
fn root_demo_campaign_six_random_scenarios_are_right_with_no_false_flag() {
    require_root("root_demo_campaign_six_random_scenarios_are_right_with_no_false_flag");
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let binaries = binaries();
    let generated = campaign(SEED, COUNT).unwrap();
    let rules: BTreeSet<Rule> = generated.iter().map(|g| g.truth.rule).collect();
    assert!(rules.len() >= 5, "the seed still covers most causes: {rules:?}");
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for g in &generated {
        let outcome = run_one(g, binaries.clone(), true);
        eprintln!("#{} {}: right {} in {:.0} s", g.index, g.scenario.name, outcome.right, outcome.seconds);
        assert!(outcome.seconds < 90.0, "#{} took {:.0} s", g.index, outcome.seconds);
        assert!(leftovers().is_empty(), "left behind after #{}: {:?}", g.index, leftovers());
        outcomes.push(outcome);
    }
    let summary = Summary::of(&outcomes);
    let text = format!(
        "{}\n{}{}",
        table::render_tables(&outcomes),
        table::render_summary(&summary),
        table::render_wrong(&outcomes)
    );
    eprintln!("{text}\ncampaign of {COUNT} took {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(summary.false_flags, 0, "{text}");
    assert!(summary.all_right(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(COUNT as u64 * 60), "{text}");
}
