//! Connection-tracking table usage (`nf_conntrack_count` and `_max`).
//!
//! Both files appear when the nf_conntrack module is loaded
//! (Documentation/networking/nf_conntrack-sysctl.rst); they describe the
//! network namespace of the reading process, the host's under hostNetwork.

use std::path::Path;

use serde::Serialize;

use crate::node_files::NodeFiles;
use crate::roots::HostRoots;
use crate::signal::{SignalResult, parse_u64};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    pub count: u64,
    pub max: u64,
}

const NOT_LOADED: &str = "nf_conntrack module not loaded";

/// Reads `<proc-root>/sys/net/netfilter/nf_conntrack_{count,max}`; absent
/// when the conntrack module is not loaded.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Conntrack> {
    let count = read_counter(&roots.proc, "sys/net/netfilter/nf_conntrack_count", files)?;
    let max = read_counter(&roots.proc, "sys/net/netfilter/nf_conntrack_max", files)?;
    Ok(Conntrack { count, max })
}

/// One decimal counter file, below the proc root.
fn read_counter(proc: &Path, file: &str, files: &mut NodeFiles) -> SignalResult<u64> {
    files.read_parsed_at(proc, &[file], NOT_LOADED, parse_u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::signal::SignalError;

    fn tree_with(count: &[u8], max: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let netfilter = dir.path().join("sys/net/netfilter");
        std::fs::create_dir_all(&netfilter).expect("netfilter dir");
        std::fs::write(netfilter.join("nf_conntrack_count"), count).expect("count");
        std::fs::write(netfilter.join("nf_conntrack_max"), max).expect("max");
        dir
    }

    #[test]
    fn reads_both_counters_and_names_the_malformed_file() {
        type Case<'a> = (&'a [u8], &'a [u8], Result<Conntrack, &'a str>);
        let cases: &[Case] = &[
            (b"21873\n", b"131072\n", Ok(Conntrack { count: 21873, max: 131072 })),
            (b"0\n", b"262144\n", Ok(Conntrack { count: 0, max: 262144 })),
            (b"", b"131072\n", Err("nf_conntrack_count is malformed: expected an unsigned integer, found \"\"")),
            (b"12\n", b"-1\n", Err("nf_conntrack_max is malformed: expected an unsigned integer, found \"-1\"")),
            (b"1 2\n", b"3\n", Err("nf_conntrack_count is malformed")),
            (
                b"\xff\n",
                b"3\n",
                Err("nf_conntrack_count is malformed: expected an unsigned integer, found \"\u{fffd}\""),
            ),
        ];
        for (count, max, expected) in cases {
            let dir = tree_with(count, max);
            match (read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want),
                (Err(error), Err(message)) => {
                    assert!(error.is_malformed(), "{error}");
                    assert!(error.to_string().contains(message), "{error}");
                }
                (got, want) => panic!("{count:?} {max:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,30}") {
            let _ = parse_u64(&text);
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_fixture_trees() {
        assert_eq!(
            read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 conntrack"),
            Conntrack { count: 21873, max: 131072 }
        );
        assert_eq!(
            read(&fixture("cgroup-v1"), &mut NodeFiles::new()).expect("x86 conntrack"),
            Conntrack { count: 412, max: 131072 }
        );
    }

    #[test]
    fn without_the_module_it_is_absent_with_the_reason() {
        match read(&fixture("bare"), &mut NodeFiles::new()) {
            Err(SignalError::Absent { path, why }) => {
                assert!(path.ends_with("nf_conntrack_count"), "{}", path.display());
                assert_eq!(why, "nf_conntrack module not loaded");
            }
            other => panic!("expected absent, got {other:?}"),
        }
    }
}
