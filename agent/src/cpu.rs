//! CPU time per mode from `/proc/stat`, for the node and for each core.
//!
//! Hand-written rather than `procfs_core::KernelStats`: that type drops the
//! core number (it pushes `cpuN` lines in file order, so an offline core
//! shifts every later one), needs a `SystemInfo` for the tick rate, fails
//! when `btime`/`ctxt`/`processes` are missing, and allocates a `String` per
//! line. This parser reads only the `cpu` lines with one reused buffer.

use std::io::BufRead;

use serde::Serialize;

use crate::node_files::NodeFiles;
use crate::roots::HostRoots;
use crate::signal::{Lines, ParseError, SignalError, SignalResult};

/// Cumulative jiffies (USER_HZ ticks) per mode since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Sum of every mode: the jiffies this CPU (or the node) has existed for.
    pub fn total_jiffies(&self) -> u64 {
        [self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal]
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(*v))
    }
}

/// One logical CPU's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoreTimes {
    pub cpu: u32,
    pub times: CpuTimes,
}

/// The `cpu` line and every `cpuN` line of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStat {
    pub total: CpuTimes,
    pub cores: Vec<CoreTimes>,
}

/// Columns a `cpu` line must have: user nice system idle have been there
/// since Linux 2.4; iowait came in 2.5.41, irq/softirq in 2.6.0, steal in
/// 2.6.11 (proc(5)), so older kernels print fewer and those read as 0.
const REQUIRED_COLUMNS: usize = 4;

/// The modes kept. Later columns (guest, guest_nice) are skipped on purpose:
/// the kernel already counts guest time inside user and nice
/// (kernel/sched/cputime.c `account_guest_time`), so adding them would count
/// it twice.
const KEPT_COLUMNS: usize = 8;

/// Parses `/proc/stat`.
///
/// Only the `cpu` and `cpuN` lines are read. The kernel prints them first and
/// together (fs/proc/stat.c `show_stat`), so parsing stops at the first other
/// line after them instead of scanning the long `intr` line.
pub fn parse_stat(reader: impl BufRead) -> Result<CpuStat, ParseError> {
    let mut stat = CpuStat::default();
    parse_stat_into(reader, &mut stat)?;
    Ok(stat)
}

/// [`parse_stat`] into `stat`, reusing its list of cores.
pub fn parse_stat_into(reader: impl BufRead, stat: &mut CpuStat) -> Result<(), ParseError> {
    let mut total = None;
    let cores = &mut stat.cores;
    cores.clear();
    let mut lines = Lines::new(reader, 256);
    while let Some((line_number, line)) = lines.next_line()? {
        if !line.starts_with(b"cpu") {
            if total.is_some() || !cores.is_empty() {
                break;
            }
            continue;
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| ParseError::new(format!("line {line_number}: a cpu line that is not UTF-8")))?;
        let (core, times) =
            parse_cpu_line(text).map_err(|e| ParseError::new(format!("line {line_number}: {}", e.0)))?;
        match core {
            None if total.is_some() => {
                return Err(ParseError::new(format!("line {line_number}: a second `cpu` total line")));
            }
            None => total = Some(times),
            Some(cpu) => {
                // The kernel prints cores in increasing order; only an
                // out-of-order number needs the full duplicate check.
                let out_of_order = cores.last().is_some_and(|last| last.cpu >= cpu);
                if out_of_order && cores.iter().any(|c| c.cpu == cpu) {
                    return Err(ParseError::new(format!("line {line_number}: cpu{cpu} appears twice")));
                }
                cores.push(CoreTimes { cpu, times });
            }
        }
    }
    stat.total = total.ok_or_else(|| ParseError::new("no `cpu` total line"))?;
    Ok(())
}

/// One `cpu` or `cpuN` line: the core number (`None` for the total) and its times.
fn parse_cpu_line(line: &str) -> Result<(Option<u32>, CpuTimes), ParseError> {
    let mut fields = line.split_ascii_whitespace();
    let label = fields.next().unwrap_or_default();
    let core = match label.strip_prefix("cpu") {
        Some("") => None,
        Some(number) if number.bytes().all(|b| b.is_ascii_digit()) => {
            Some(number.parse::<u32>().map_err(|_| ParseError::new(format!("core number out of range in {label:?}")))?)
        }
        _ => return Err(ParseError::new(format!("unexpected label {label:?}, expected `cpu` or `cpuN`"))),
    };
    let mut columns = [0u64; KEPT_COLUMNS];
    let mut count = 0usize;
    for field in fields {
        let value: u64 = field
            .parse()
            .map_err(|_| ParseError::new(format!("{label}: column {} is not a number: {field:?}", count + 1)))?;
        if let Some(slot) = columns.get_mut(count) {
            *slot = value;
        }
        count += 1;
    }
    if count < REQUIRED_COLUMNS {
        return Err(ParseError::new(format!(
            "{label}: {count} columns, at least {REQUIRED_COLUMNS} expected (user nice system idle)"
        )));
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = columns;
    Ok((core, CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal }))
}

/// Reads `<proc-root>/stat`.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<CpuStat> {
    let mut stat = CpuStat::default();
    read_into(roots, files, &mut stat)?;
    Ok(stat)
}

/// [`read`] into `stat`, reusing its list of cores.
pub fn read_into(roots: &HostRoots, files: &mut NodeFiles, stat: &mut CpuStat) -> SignalResult<()> {
    let path = || roots.proc("stat");
    let bytes = files
        .read_at(&roots.proc, &["stat"])
        .map_err(|e| SignalError::from_io(path(), e, "no stat file: is --proc-root a procfs mount?"))?;
    parse_stat_into(bytes, stat).map_err(|e| e.at(&path()))
}

/// Inputs for the signal parsers' property tests: a valid file with random
/// edits biased towards the bytes that parsers split on. Lives here, next
/// to the first parser, so every signal module's tests share it.
#[cfg(test)]
pub(crate) mod mutation {
    use proptest::prelude::*;

    /// `valid` with up to 16 random replacements, insertions and removals.
    pub(crate) fn mutated(valid: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![any::<u8>(), prop::sample::select(b" \t\n:=.-0123456789abcdefx".to_vec())];
        proptest::collection::vec((any::<prop::sample::Index>(), byte, 0u8..3), 0..16).prop_map(move |edits| {
            let mut bytes = valid.to_vec();
            for (at, byte, operation) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let index = at.index(bytes.len());
                match operation {
                    0 => bytes[index] = byte,
                    1 => bytes.insert(index, byte),
                    _ => {
                        bytes.remove(index);
                    }
                }
            }
            bytes
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::signal::SignalError;

    fn times(columns: [u64; 8]) -> CpuTimes {
        let [user, nice, system, idle, iowait, irq, softirq, steal] = columns;
        CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal }
    }

    fn core(cpu: u32, columns: [u64; 8]) -> CoreTimes {
        CoreTimes { cpu, times: times(columns) }
    }

    /// Raspberry Pi 5, kernel 6.6.51+rpt-rpi-2712 (10 columns, 4 cores).
    const PI5_KERNEL_6_6: &str = "\
cpu  39429748 4124 12479748 50839974 186980 0 2415202 0 0 0
cpu0 9843211 1022 3120433 12654320 48211 0 1502110 0 0 0
cpu1 9921877 987 3098110 12698766 45102 0 312455 0 0 0
cpu2 9788120 1104 3150223 12781344 47655 0 298761 0 0 0
cpu3 9876540 1011 3110982 12705544 46012 0 301876 0 0 0
intr 2155850193 0 0 0 0 0 0 0 291929390 0 0 0 0
ctxt 5120993321
btime 1761822415
processes 4183312
procs_running 6
procs_blocked 0
softirq 1843321087 12 391233455 221 602334981 120331 0 1276 499873221 0 349757590
";

    /// x86_64, kernel 6.1 under KVM: steal and guest columns are non-zero.
    const X86_KERNEL_6_1: &str = "\
cpu  12161 0 3578 62676 749 0 49 13 7 0
cpu0 5590 0 1539 32385 71 0 13 5 3 0
cpu1 6571 0 2039 30291 678 0 36 8 4 0
intr 182134 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 14
ctxt 304275
btime 1795602619
";

    /// Linux 2.6.9 (RHEL 4) had no steal column yet: 7 columns.
    const OLD_KERNEL_2_6_9: &str = "\
cpu  2255 34 2290 22625563 6290 127 456
cpu0 1132 34 1441 11311718 3675 127 438
cpu1 1123 0 849 11313845 2614 0 18
intr 114930548 113199788 3 0 5 263 0 4 [... 56 more items]
ctxt 1990473
";

    #[test]
    fn parses_real_and_old_kernel_outputs() {
        let cases: &[(&str, &str, CpuStat)] = &[
            (
                "Raspberry Pi 5, kernel 6.6",
                PI5_KERNEL_6_6,
                CpuStat {
                    total: times([39429748, 4124, 12479748, 50839974, 186980, 0, 2415202, 0]),
                    cores: vec![
                        core(0, [9843211, 1022, 3120433, 12654320, 48211, 0, 1502110, 0]),
                        core(1, [9921877, 987, 3098110, 12698766, 45102, 0, 312455, 0]),
                        core(2, [9788120, 1104, 3150223, 12781344, 47655, 0, 298761, 0]),
                        core(3, [9876540, 1011, 3110982, 12705544, 46012, 0, 301876, 0]),
                    ],
                },
            ),
            (
                "x86_64 kernel 6.1: steal kept, guest (already inside user) dropped",
                X86_KERNEL_6_1,
                CpuStat {
                    total: times([12161, 0, 3578, 62676, 749, 0, 49, 13]),
                    cores: vec![
                        core(0, [5590, 0, 1539, 32385, 71, 0, 13, 5]),
                        core(1, [6571, 0, 2039, 30291, 678, 0, 36, 8]),
                    ],
                },
            ),
            (
                "Linux 2.6.9: no steal column, so steal is 0",
                OLD_KERNEL_2_6_9,
                CpuStat {
                    total: times([2255, 34, 2290, 22625563, 6290, 127, 456, 0]),
                    cores: vec![
                        core(0, [1132, 34, 1441, 11311718, 3675, 127, 438, 0]),
                        core(1, [1123, 0, 849, 11313845, 2614, 0, 18, 0]),
                    ],
                },
            ),
            (
                "Linux 2.4: only user nice system idle",
                "cpu  100 2 30 4000\ncpu0 100 2 30 4000\npage 5741 1808\n",
                CpuStat {
                    total: times([100, 2, 30, 4000, 0, 0, 0, 0]),
                    cores: vec![core(0, [100, 2, 30, 4000, 0, 0, 0, 0])],
                },
            ),
            (
                "cpu1 offline: the core numbers come from the labels, not the line order",
                "cpu  30 0 3 300 0 0 0 0 0 0\ncpu0 10 0 1 100 0 0 0 0 0 0\ncpu2 20 0 2 200 0 0 0 0 0 0\n",
                CpuStat {
                    total: times([30, 0, 3, 300, 0, 0, 0, 0]),
                    cores: vec![core(0, [10, 0, 1, 100, 0, 0, 0, 0]), core(2, [20, 0, 2, 200, 0, 0, 0, 0])],
                },
            ),
            (
                "no trailing newline, and lines after the cpu block are not read",
                "cpu  1 2 3 4 5 6 7 8 9 10\nintr \u{fffd} not parsed\ncpu0 garbage is never reached",
                CpuStat { total: times([1, 2, 3, 4, 5, 6, 7, 8]), cores: vec![] },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(parse_stat(input.as_bytes()).as_ref(), Ok(expected), "{name}");
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty file", b"", "no `cpu` total line"),
            ("only per-core lines", b"cpu0 1 2 3 4\n", "no `cpu` total line"),
            ("not /proc/stat", b"MemTotal: 1024 kB\n", "no `cpu` total line"),
            ("three columns", b"cpu  1 2 3\n", "3 columns, at least 4 expected"),
            ("a label only", b"cpu\n", "0 columns, at least 4 expected"),
            ("a word for a number", b"cpu  1 2 x 4\n", "column 3 is not a number"),
            ("a negative number", b"cpu  1 -2 3 4\n", "column 2 is not a number"),
            ("a number past u64", b"cpu  18446744073709551616 0 0 0\n", "column 1 is not a number"),
            ("an unknown cpu label", b"cpu  1 2 3 4\ncpux 1 2 3 4\n", "line 2: unexpected label \"cpux\""),
            ("a core number past u32", b"cpu  1 2 3 4\ncpu4294967296 1 2 3 4\n", "core number out of range"),
            ("two totals", b"cpu  1 2 3 4\ncpu  1 2 3 4\n", "line 2: a second `cpu` total line"),
            ("a core twice", b"cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu0 1 2 3 4\n", "cpu0 appears twice"),
            ("bytes that are not UTF-8", b"cpu  1 2 \xff 4\n", "line 1: a cpu line that is not UTF-8"),
        ];
        for (name, input, message) in cases {
            match parse_stat(*input) {
                Err(error) => assert!(error.0.contains(message), "{name}: {:?} does not mention {message:?}", error.0),
                Ok(stat) => panic!("{name}: parsed as {stat:?}"),
            }
        }
    }

    #[test]
    fn total_jiffies_adds_every_mode() {
        assert_eq!(times([1, 2, 3, 4, 5, 6, 7, 8]).total_jiffies(), 36);
        assert_eq!(times([u64::MAX, 1, 0, 0, 0, 0, 0, 0]).total_jiffies(), u64::MAX, "saturates, never wraps");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_stat(bytes.as_slice());
        }

        #[test]
        fn mutated_real_files_never_panic(bytes in mutation::mutated(PI5_KERNEL_6_6.as_bytes())) {
            if let Ok(stat) = parse_stat(bytes.as_slice()) {
                prop_assert!(stat.cores.len() <= 5);
            }
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_fixture_trees() {
        let pi5 = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 stat");
        assert_eq!(pi5.cores.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(pi5.total, times([39429748, 4124, 12479748, 50839974, 186980, 0, 2415202, 0]));
        assert_eq!(pi5.cores[0].times.softirq, 1502110, "the NAT-busy core 0");
        let summed: u64 = pi5.cores.iter().map(|c| c.times.total_jiffies()).sum();
        assert_eq!(summed, pi5.total.total_jiffies(), "the fixture's total line is the sum of its cores");

        assert_eq!(read(&fixture("cgroup-v1"), &mut NodeFiles::new()).expect("x86 stat").cores.len(), 2);
        assert_eq!(read(&fixture("bare"), &mut NodeFiles::new()).expect("bare stat").cores.len(), 1);
    }

    #[test]
    fn a_missing_file_is_absent_and_a_malformed_one_is_malformed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roots = HostRoots::new(dir.path(), dir.path());
        assert!(matches!(read(&roots, &mut NodeFiles::new()), Err(SignalError::Absent { .. })));

        std::fs::write(dir.path().join("stat"), "cpu  1 2\n").expect("write stat");
        let error = read(&roots, &mut NodeFiles::new()).expect_err("two columns must not parse");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains("stat is malformed: line 1: cpu: 2 columns"), "{error}");
    }
}
