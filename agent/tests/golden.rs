//! Golden outputs: each fixture tree is sampled and compared with its expected JSON.
//!
//! The trees are `tests/fixtures/<name>/{proc,sys}`, the goldens
//! `tests/fixtures/<name>/expected.json`.
//!
//! After an intended change, `BAKERY_BLESS=1 cargo test -p bakery-agent --test golden`
//! rewrites the goldens; review the diff before committing it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bakery_agent::node_cgroup::{NodeCgroup, PressureFrom};
use bakery_agent::roots::HostRoots;
use bakery_agent::sampler::{Sample, Sampler};

/// A fixed time, so goldens do not change from run to run.
const FIXED_TIMESTAMP_MS: i64 = 1_764_000_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Samples a fixture tree. A tree that is a container node (kind, k3d) names its node cgroup in
/// a `node-cgroup` file, as its agent would be given it with `--node-cgroup`.
fn sample_fixture(name: &str) -> Sample {
    fixture_sampler(name).sample(FIXED_TIMESTAMP_MS)
}

/// The sampler of a fixture tree, as its agent would be started.
fn fixture_sampler(name: &str) -> Sampler {
    let dir = fixture(name);
    let roots = HostRoots::new(dir.join("proc"), dir.join("sys"));
    let node = bakery_agent::node_name_from(&roots).expect("every fixture names its node in proc/sys/kernel/hostname");
    let sampler = Sampler::new(roots, node);
    match std::fs::read_to_string(dir.join("node-cgroup")) {
        Ok(path) => sampler.with_node_cgroup(NodeCgroup::new(path.trim())),
        Err(_) => sampler,
    }
}

const FIXTURES: [&str; 5] = ["pi5", "cgroup-v1", "bare", "kind-v1", "k3d-v2"];

/// A streaming agent keeps one `Sample` and writes each sample over the last one: whatever the
/// last one held (other pods, interfaces, sensors, unavailable signals), the result is the
/// sample taken afresh.
#[test]
fn a_sample_written_over_another_nodes_is_the_sample_taken_afresh() {
    for name in FIXTURES {
        let fresh = sample_fixture(name);
        for other in FIXTURES {
            let mut sample = sample_fixture(other);
            fixture_sampler(name).sample_into(&mut sample, FIXED_TIMESTAMP_MS);
            assert!(sample == fresh, "{name} written over {other}:\n{sample:#?}\nagainst\n{fresh:#?}");
        }
    }
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
fn kind_node_on_cgroup_v1_matches_its_golden() {
    check_golden("kind-v1");
}

#[test]
fn k3d_node_on_cgroup_v2_matches_its_golden() {
    check_golden("k3d-v2");
}

/// What a user of a container node relies on: the node's own figures, not the host's, and the
/// sample saying where they came from.
#[test]
fn a_container_node_reports_its_cgroup_not_the_host() {
    const MIB: u64 = 1 << 20;
    // The node's working set: its usage minus its inactive file cache (1536 - 350 MiB, 2048 - 416 MiB).
    for (name, version, limit, used, pressure_from) in [
        ("kind-v1", "v1", Some(4096 * MIB), 1186 * MIB, PressureFrom::Host),
        ("k3d-v2", "v2", None, 1632 * MIB, PressureFrom::Cgroup),
    ] {
        let sample = sample_fixture(name);
        assert!(
            sample.unavailable.iter().all(|u| !["cpu", "memory", "pressure"].contains(&u.signal.as_str())),
            "{name}: {:?}",
            sample.unavailable
        );
        let dir = fixture(name);
        let host = HostRoots::new(dir.join("proc"), dir.join("sys"));
        let host = Sampler::new(host, "host").sample(FIXED_TIMESTAMP_MS);
        let (node_cpu, host_cpu) = (sample.cpu.clone().unwrap(), host.cpu.unwrap());
        assert_eq!(node_cpu.total.total_jiffies(), host_cpu.total.total_jiffies(), "{name}: the host's time base");
        let process = |t: bakery_agent::cpu::CpuTimes| t.user + t.nice + t.system;
        assert!(process(node_cpu.total) < process(host_cpu.total) / 2, "{name}: the node's share of the host");
        let pod_jiffies: u64 = sample.pods.iter().map(|p| p.cpu_usage_us.unwrap() / 10_000).sum();
        assert!(!sample.pods.is_empty() && pod_jiffies < process(node_cpu.total), "{name}: pods inside the node");
        assert!(node_cpu.cores.is_empty(), "{name}: no per-core split in a cgroup");

        let memory = sample.memory.unwrap();
        let host_memory = host.memory.unwrap();
        assert_eq!(memory.total_bytes, limit.unwrap_or(host_memory.total_bytes), "{name}");
        assert_eq!(memory.total_bytes - memory.available_bytes, used, "{name}: used is the node's, not the host's");
        assert_eq!(memory.swap_total_bytes, host_memory.swap_total_bytes, "{name}: swap stays the host's");

        let source = sample.node_cgroup.as_ref().expect("the sample names its cgroup");
        assert_eq!((source.memory_limit_bytes, source.pressure_from), (limit, Some(pressure_from)), "{name}");
        let json = serde_json::to_value(&sample).unwrap();
        assert_eq!(json["node_cgroup"]["version"], version, "{name}");
        let host_psi = host.pressure[0].total_us;
        let expected_psi = if pressure_from == PressureFrom::Host { host_psi } else { 20_334_871 };
        assert_eq!(sample.pressure[0].total_us, expected_psi, "{name}");
    }
    // Without the flag nothing says "cgroup": the key is left out of the JSON.
    assert!(serde_json::to_value(sample_fixture("pi5")).unwrap().get("node_cgroup").is_none());
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
