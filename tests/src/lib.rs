//! The harness bakery's end-to-end tests share: root checks, network
//! namespaces, kubepods-style cgroups, the built binaries and an OTLP receiver.

pub mod bench_agent;
pub mod binaries;
pub mod kube_double;
pub mod measure;
pub mod netns;
pub mod rotel;

/// Fails the calling test with a clear message when not run as root.
/// Tests that need root are named `root_*` so that `cargo test -- --skip root_`
/// selects them out on a developer machine; CI runs as root and runs them.
pub fn require_root(test: &str) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "{test} needs root (network namespaces, veth, cgroups): run it as root, or skip it with `cargo test -- --skip root_`"
    );
}
