//! Shared helpers: loading the diagnosis fixtures (`tests/fixtures/*.toml`), replaying ticks, and
//! describing evaluations on failure.

use std::collections::BTreeSet;
use std::path::PathBuf;

use bakery_diagnosis::fixture::Fixture;
use bakery_diagnosis::{Cause, Config, Detector, Evaluation, Tick};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture file name without its extension, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn load(name: &str) -> Fixture {
    let path = fixture_dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    assert_eq!(fixture.name, name, "the fixture's name matches its file");
    fixture.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    fixture
}

pub fn replay(ticks: &[Tick], config: &Config) -> Vec<Evaluation> {
    let mut detector = Detector::new(config.clone()).expect("valid configuration");
    ticks.iter().map(|t| detector.observe(t).expect("well-formed tick")).collect()
}

pub fn active(evaluation: &Evaluation) -> BTreeSet<(String, Cause)> {
    evaluation.verdicts.iter().map(|v| (v.node.clone(), v.cause)).collect()
}

/// A readable account of every raise and clear, for assertion messages.
pub fn describe(evaluations: &[Evaluation], start_ms: i64) -> String {
    let mut out = String::new();
    for e in evaluations {
        for c in &e.changes {
            out.push_str(&format!("  {:+.2} s: {c}\n", (c.at_ms - start_ms) as f64 / 1000.0));
            if let Some(v) = e.verdicts.iter().find(|v| v.node == c.node && v.cause == c.cause) {
                out.push_str(&format!("    {}\n", v.to_string().replace('\n', "\n    ")));
            }
        }
    }
    if out.is_empty() { "  (no change)\n".to_string() } else { out }
}
