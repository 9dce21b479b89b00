//! What the demo's end-to-end tests share: one cluster of namespaces fits on a machine, so they
//! take turns on [`ONE_CLUSTER`], and the binaries that cluster runs.

use std::sync::Mutex;

use bakery_demo::binaries::Binaries;
use bakery_lab::binaries::built_binary;

/// One cluster fits on a machine: the demo tests (`scenarios.rs`, `campaign.rs`) take turns, so
/// however many test threads run, one builds a cluster at a time.
pub static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// The demo's binaries, built if needed, with nginx and oha found on this machine.
pub fn binaries() -> Binaries {
    let demo = built_binary("bakery-demo", "bakery-demo").unwrap();
    for (package, bin) in [
        ("bakery-agent", "bakery-agent"),
        ("bakery-collector", "bakery-collector"),
        ("bakery-top", "bakery-top"),
        ("bakery-lab", "bakery-fake-apiserver"),
    ] {
        built_binary(package, bin).unwrap();
    }
    let dir = demo.parent().unwrap().to_path_buf();
    let binaries = Binaries::in_dir(&dir, demo).unwrap();
    assert!(binaries.nginx.is_some(), "nginx is missing: `apt-get install nginx` (cargo xtask ci installs it)");
    assert!(binaries.oha.is_some(), "oha is missing: `cargo install oha --locked` (cargo xtask ci installs it)");
    binaries
}
