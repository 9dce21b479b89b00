//! Golden outputs: each fixture tree under `tests/fixtures/<name>/{proc,sys}`
//! is sampled and compared with `tests/fixtures/<name>/expected.json`.
//!
//! After an intended change, `BAKERY_BLESS=1 cargo test -p bakery-agent --test golden`
//! rewrites the goldens; review the diff before committing it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bakery_agent::roots::HostRoots;
use bakery_agent::sampler::{Sample, Sampler};

/// A fixed time, so goldens do not change from run to run.
const FIXED_TIMESTAMP_MS: i64 = 1_764_000_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn sample_fixture(name: &str) -> Sample {
    let dir = fixture(name);
    let roots = HostRoots::new(dir.join("proc"), dir.join("sys"));
    let node = bakery_agent::node_name_from(&roots).expect("every fixture names its node in proc/sys/kernel/hostname");
    Sampler::new(roots, node).sample(FIXED_TIMESTAMP_MS)
}

fn check_golden(name: &str) {
    // Reasons name the files they looked for; the checkout's location is not part of the golden.
    let fixture_dir = fixture(name);
    let actual = (serde_json::to_string_pretty(&sample_fixture(name)).unwrap() + "\n")
        .replace(fixture_dir.to_str().expect("a UTF-8 checkout path"), "<fixture>");
    let golden = fixture(name).join("expected.json");
    if std::env::var_os("BAKERY_BLESS").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with BAKERY_BLESS=1", golden.display()));
    assert!(
        expected == actual,
        "the sample of fixture `{name}` differs from {}; if the change is intended, run with BAKERY_BLESS=1 and review the diff.\n--- actual ---\n{actual}",
        golden.display()
    );
}

#[test]
fn pi5_node_matches_its_golden() {
    check_golden("pi5");
}

#[test]
fn cgroup_v1_node_matches_its_golden() {
    check_golden("cgroup-v1");
}

#[test]
fn bare_node_matches_its_golden() {
    check_golden("bare");
}

#[test]
fn a_pi5_sample_has_every_signal() {
    let sample = sample_fixture("pi5");
    assert!(sample.unavailable.is_empty(), "nothing is missing on the Pi 5 fixture: {:?}", sample.unavailable);
    assert_eq!(sample.parse_errors_total, 0);
    let throttle = sample.throttle.expect("the Pi 5 fixture has get_throttled");
    assert!(throttle.now.throttled && throttle.since_boot.throttled);
    assert!(sample.cpu_frequencies.iter().all(|f| f.current_khz < f.max_khz), "the fixture runs below max");
    assert!(sample.thermals.temperatures.iter().any(|t| t.sensor.ends_with("cpu-thermal")));
    assert!(!sample.thermals.fans.is_empty());
    assert!(!sample.pods.is_empty());
}

#[test]
fn a_bare_node_lists_each_missing_signal_with_its_reason() {
    let sample = sample_fixture("bare");
    let mut missing: Vec<&str> = sample.unavailable.iter().map(|u| u.signal.as_str()).collect();
    missing.sort_unstable();
    assert_eq!(missing, ["conntrack", "cpufreq", "pressure", "thermal", "throttle"]);
    assert!(sample.unavailable.iter().all(|u| !u.reason.is_empty()));
    assert_eq!(sample.parse_errors_total, 0, "a missing optional file is not an error");
    assert!(sample.cpu.is_some() && sample.memory.is_some() && !sample.interfaces.is_empty());
}

#[test]
fn a_malformed_file_is_counted_and_the_rest_of_the_sample_arrives() {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&fixture("pi5"), copy.path());
    std::fs::write(copy.path().join("proc/meminfo"), "MemTotal: lots\n\0\0garbage").unwrap();
    let roots = HostRoots::new(copy.path().join("proc"), copy.path().join("sys"));
    let mut sampler = Sampler::new(roots, "master-02");
    let first = sampler.sample(FIXED_TIMESTAMP_MS);
    assert!(first.memory.is_none());
    assert!(first.unavailable.iter().any(|u| u.signal == "memory" && u.reason.contains("malformed")));
    assert_eq!(first.parse_errors_total, 1);
    assert!(first.cpu.is_some() && !first.pods.is_empty(), "the other signals still arrive");
    let second = sampler.sample(FIXED_TIMESTAMP_MS + 1000);
    assert_eq!(second.parse_errors_total, 2, "the count is cumulative, once per malformed read");
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
