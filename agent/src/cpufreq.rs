//! Per-core CPU frequency, current and maximum, from cpufreq in sysfs.
//!
//! Attributes from Documentation/admin-guide/pm/cpufreq.rst: `scaling_cur_freq`
//! is the frequency the governor last set (readable by anyone),
//! `cpuinfo_cur_freq` the hardware's own reading (often root-only), and
//! `cpuinfo_max_freq` the highest the CPU can run at, all in kHz.

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::node_files::{NodeFiles, path_of};
use crate::reuse::{Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalError, SignalResult, parse_u64};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuFrequency {
    pub cpu: u32,
    pub current_khz: u64,
    pub max_khz: u64,
}

const NO_CPUFREQ: &str = "no CPU has a cpufreq directory (no cpufreq driver; usual in virtual machines)";

/// An offline core's policy is inactive and its attributes fail with
/// EBUSY (drivers/cpufreq/cpufreq.c `show`). 16 on every Linux
/// architecture (include/uapi/asm-generic/errno-base.h).
const EBUSY: i32 = 16;

/// Reads `<sys-root>/devices/system/cpu/cpu*/cpufreq`; absent without cpufreq.
/// Cores come in CPU-number order; an offline core is left out.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Vec<CpuFrequency>> {
    let mut cores = Vec::new();
    read_into(roots, files, &mut Vec::new(), &mut cores)?;
    Ok(cores)
}

/// Where the CPU directories are below the sys root.
const CPU_DIR: &str = "devices/system/cpu";

/// [`read`] into `cores`; `numbered` keeps the CPU directories' names
/// between samples, so that the same CPUs as last time cost no allocation.
pub fn read_into(
    roots: &HostRoots,
    files: &mut NodeFiles,
    numbered: &mut Vec<(u32, String)>,
    cores: &mut Vec<CpuFrequency>,
) -> SignalResult<()> {
    let sys = roots.sys.as_path();
    let cpu_dir = || path_of(sys, &[CPU_DIR]);
    let absent = || SignalError::from_io(cpu_dir(), io::ErrorKind::NotFound.into(), NO_CPUFREQ);
    let listed = files.list_at(sys, &[CPU_DIR]).map_err(|e| SignalError::from_io(cpu_dir(), e, NO_CPUFREQ))?;
    {
        let mut found = Refill::new(numbered);
        for name in listed.ok_or_else(absent)? {
            let Some(cpu) = core_number(name) else { continue };
            let slot = found.next_slot();
            slot.0 = cpu;
            set_str(&mut slot.1, name);
        }
    }
    cores.clear();
    for (cpu, name) in numbered.iter() {
        // A core without a cpufreq policy (no driver: most virtual machines)
        // is told by the cached listing, without trying its files.
        let core_dir = [CPU_DIR, name];
        let listed = files
            .list_at(sys, &core_dir)
            .map_err(|source| SignalError::Io { path: path_of(sys, &core_dir), source })?;
        if !listed.is_some_and(|names| names.iter().any(|name| name == "cpufreq")) {
            continue;
        }
        if let Some(frequency) = read_core(*cpu, (sys, name), files)? {
            cores.push(frequency);
        }
    }
    if cores.is_empty() {
        return Err(SignalError::Absent { path: path_of(sys, &[CPU_DIR, "cpu*/cpufreq"]), why: NO_CPUFREQ.into() });
    }
    cores.sort_by_key(|core| core.cpu);
    Ok(())
}

/// `cpu12` → 12; `cpufreq`, `cpuidle` and other entries → `None`.
fn core_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("cpu")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One core's frequencies (its directory `core` below the CPU directory of
/// the sys root), or `None` when it has no cpufreq, is offline, or has no
/// current reading we may read.
fn read_core(cpu: u32, (sys, core): (&Path, &str), files: &mut NodeFiles) -> SignalResult<Option<CpuFrequency>> {
    let attribute = |name| [CPU_DIR, core, "cpufreq", name];
    let current = match read_khz(sys, &attribute("scaling_cur_freq"), files)? {
        Some(khz) => Some(khz),
        // cpuinfo_cur_freq is mode 0400: an agent without root may not read it.
        None => match read_khz(sys, &attribute("cpuinfo_cur_freq"), files) {
            Err(SignalError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => None,
            other => other?,
        },
    };
    let max = read_khz(sys, &attribute("cpuinfo_max_freq"), files)?;
    Ok(match (current, max) {
        (Some(current_khz), Some(max_khz)) => Some(CpuFrequency { cpu, current_khz, max_khz }),
        _ => None,
    })
}

/// A kHz attribute; `None` when it is missing, its core is offline, or the
/// driver cannot tell (`<unknown>`, `show_cpuinfo_cur_freq` in
/// drivers/cpufreq/cpufreq.c).
fn read_khz(sys: &Path, parts: &[&str], files: &mut NodeFiles) -> SignalResult<Option<u64>> {
    match files.read_at(sys, parts) {
        Ok(bytes) => parse_khz(&String::from_utf8_lossy(bytes)).map_err(|e| e.at(&path_of(sys, parts))),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(EBUSY) => Ok(None),
        Err(source) => Err(SignalError::Io { path: path_of(sys, parts), source }),
    }
}

/// `"2400000\n"` → 2400000; `"<unknown>\n"` → `None`.
pub fn parse_khz(text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim() == "<unknown>" {
        return Ok(None);
    }
    parse_u64(text).map(Some)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_khz_attributes() {
        let cases: &[(&str, Result<Option<u64>, &str>)] = &[
            ("2400000\n", Ok(Some(2400000))),
            ("1500000", Ok(Some(1500000))),
            ("<unknown>\n", Ok(None)),
            ("", Err("expected an unsigned integer, found \"\"")),
            ("2.4 GHz\n", Err("expected an unsigned integer, found \"2.4 GHz\"")),
            ("-1\n", Err("expected an unsigned integer")),
        ];
        for (input, expected) in cases {
            match (parse_khz(input), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input:?}"),
                (Err(error), Err(message)) => assert!(error.0.contains(message), "{input:?}: {}", error.0),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn names_only_numbered_cpu_entries() {
        let cases = [("cpu0", Some(0)), ("cpu127", Some(127)), ("cpufreq", None), ("cpuidle", None), ("cpu", None)];
        for (name, expected) in cases {
            assert_eq!(core_number(name), expected, "{name}");
        }
        assert_eq!(core_number("cpu99999999999"), None, "past u32");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,30}") {
            let _ = parse_khz(&text);
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_pi5_fixture_below_its_maximum() {
        let cores = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 cpufreq");
        let expected: Vec<_> =
            (0..4).map(|cpu| CpuFrequency { cpu, current_khz: 1_500_000, max_khz: 2_400_000 }).collect();
        assert_eq!(cores, expected);
    }

    #[test]
    fn without_cpufreq_it_is_absent_with_the_reason() {
        for tree in ["bare", "cgroup-v1"] {
            match read(&fixture(tree), &mut NodeFiles::new()) {
                Err(SignalError::Absent { why, .. }) => assert!(why.contains("no cpufreq driver"), "{tree}: {why}"),
                other => panic!("{tree}: expected absent, got {other:?}"),
            }
        }
        // A VM: the cpu directories exist but have no cpufreq.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("devices/system/cpu/cpu0/cpuidle")).expect("cpu0");
        assert!(matches!(
            read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()),
            Err(SignalError::Absent { .. })
        ));
    }

    fn write_core(sys: &Path, cpu: u32, files: &[(&str, &str)]) {
        let cpufreq = sys.join(format!("devices/system/cpu/cpu{cpu}/cpufreq"));
        std::fs::create_dir_all(&cpufreq).expect("cpufreq dir");
        for (name, content) in files {
            std::fs::write(cpufreq.join(name), content).expect("cpufreq attribute");
        }
    }

    #[test]
    fn falls_back_to_cpuinfo_cur_freq_and_orders_by_cpu_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sys = dir.path();
        write_core(sys, 10, &[("scaling_cur_freq", "600000\n"), ("cpuinfo_max_freq", "1800000\n")]);
        write_core(sys, 2, &[("cpuinfo_cur_freq", "1200000\n"), ("cpuinfo_max_freq", "1800000\n")]);
        // No current frequency at all: left out rather than reported as 0.
        write_core(sys, 3, &[("cpuinfo_max_freq", "1800000\n")]);
        let cores = read(&HostRoots::new(sys, sys), &mut NodeFiles::new()).expect("cpufreq");
        assert_eq!(
            cores,
            [
                CpuFrequency { cpu: 2, current_khz: 1_200_000, max_khz: 1_800_000 },
                CpuFrequency { cpu: 10, current_khz: 600_000, max_khz: 1_800_000 },
            ]
        );
    }

    #[test]
    fn a_malformed_attribute_is_malformed() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_core(dir.path(), 0, &[("scaling_cur_freq", "fast\n"), ("cpuinfo_max_freq", "1800000\n")]);
        let error = read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()).expect_err("not a number");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains("scaling_cur_freq is malformed"), "{error}");
    }
}
