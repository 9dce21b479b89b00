//! Node memory from `/proc/meminfo`.
//!
//! Hand-written rather than `procfs_core::Meminfo`: that parser panics on a
//! field name ending in a multi-byte character (it slices off the last byte
//! to drop the colon) and on a kB value too large for bytes (debug builds
//! trap the overflow, release builds wrap it), fails unless a dozen fields
//! we do not use are present, and builds a `HashMap` of ~50 `String`s per
//! read. This one looks only at the seven fields the agent ships and stops
//! once it has them.

use std::io::BufRead;

use serde::Serialize;

use crate::node_files::NodeFiles;
use crate::roots::HostRoots;
use crate::signal::{Lines, ParseError, SignalError, SignalResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    /// `MemAvailable`. Kernels before 3.14 lack it; there this is
    /// `MemFree + Buffers + Cached`, the estimate `free` used before.
    pub available_bytes: u64,
    pub free_bytes: u64,
    pub buffers_bytes: u64,
    pub cached_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

/// The fields read, in the order the kernel prints them (fs/proc/meminfo.c).
const FIELDS: [&str; 7] = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree"];

/// Parses `/proc/meminfo` (values are in KiB there; these are bytes).
///
/// Lines of other fields are skipped unread, so a field added by a newer
/// kernel, or an odd one we do not use, never fails the signal.
pub fn parse_meminfo(reader: impl BufRead) -> Result<Memory, ParseError> {
    let mut values: [Option<u64>; FIELDS.len()] = [None; FIELDS.len()];
    let mut lines = Lines::new(reader, 64);
    while values.iter().any(Option::is_none) {
        let Some((line_number, line)) = lines.next_line()? else { break };
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, rest) = line.split_at(colon);
        let Some(slot) = FIELDS.iter().position(|field| field.as_bytes() == name) else { continue };
        let value = parse_kib_value(&rest[1..])
            .map_err(|e| ParseError::new(format!("line {line_number}: {}: {}", FIELDS[slot], e.0)))?;
        values[slot] = Some(value);
    }
    let [total, free, available, buffers, cached, swap_total, swap_free] = values;
    let total_bytes = total.ok_or_else(|| ParseError::new("no MemTotal line"))?;
    let free_bytes = free.unwrap_or_default();
    let buffers_bytes = buffers.unwrap_or_default();
    let cached_bytes = cached.unwrap_or_default();
    let available_bytes =
        available.unwrap_or_else(|| free_bytes.saturating_add(buffers_bytes).saturating_add(cached_bytes));
    Ok(Memory {
        total_bytes,
        available_bytes,
        free_bytes,
        buffers_bytes,
        cached_bytes,
        swap_total_bytes: swap_total.unwrap_or_default(),
        swap_free_bytes: swap_free.unwrap_or_default(),
    })
}

/// `"   8245488 kB\n"` → bytes. The kernel prints these fields in kB
/// (= KiB, `show_val_kb` in fs/proc/meminfo.c).
fn parse_kib_value(rest: &[u8]) -> Result<u64, ParseError> {
    let text = std::str::from_utf8(rest).map_err(|_| ParseError::new("value is not UTF-8"))?;
    let mut fields = text.split_ascii_whitespace();
    let number = fields.next().ok_or_else(|| ParseError::new("no value"))?;
    let kib: u64 = number.parse().map_err(|_| ParseError::new(format!("{number:?} is not a number")))?;
    match (fields.next(), fields.next()) {
        (Some("kB"), None) => kib.checked_mul(1024).ok_or_else(|| ParseError::new(format!("{kib} kB overflows bytes"))),
        (unit, _) => Err(ParseError::new(format!("expected `{kib} kB`, found unit {unit:?} in {:?}", text.trim()))),
    }
}

/// Reads `<proc-root>/meminfo`.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Memory> {
    let path = || roots.proc("meminfo");
    let bytes = files
        .read_at(&roots.proc, &["meminfo"])
        .map_err(|e| SignalError::from_io(path(), e, "no meminfo file: is --proc-root a procfs mount?"))?;
    parse_meminfo(bytes).map_err(|e| e.at(&path()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cpu::mutation::mutated;

    const KIB: u64 = 1024;

    /// Raspberry Pi 5 8 GB, kernel 6.6 (16 KiB pages, CMA, zswap).
    const PI5_KERNEL_6_6: &str = "\
MemTotal:        8245488 kB
MemFree:          412336 kB
MemAvailable:    1893440 kB
Buffers:           98304 kB
Cached:          1699520 kB
SwapCached:         4096 kB
Active:          5120448 kB
Inactive:        1923072 kB
Active(anon):    4689920 kB
Inactive(anon):   690176 kB
Active(file):     430528 kB
Inactive(file):  1232896 kB
Unevictable:       16384 kB
Mlocked:           16384 kB
SwapTotal:        524272 kB
SwapFree:         498160 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:              2304 kB
VmallocTotal:   68718428160 kB
CmaTotal:          65536 kB
HugePages_Total:       0
Hugepagesize:      32768 kB
";

    /// x86_64, kernel 6.18: the fields we read come before the unit-less
    /// HugePages counts and DirectMap lines.
    const X86_KERNEL_6_18: &str = "\
MemTotal:       24684084 kB
MemFree:        23865636 kB
MemAvailable:   24307084 kB
Buffers:            6112 kB
Cached:          1164560 kB
SwapCached:            0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
HugePages_Total:       0
DirectMap1G:    25165824 kB
";

    /// Linux 2.6.32 (before 3.14): no MemAvailable.
    const OLD_KERNEL_2_6_32: &str = "\
MemTotal:        1019820 kB
MemFree:          512320 kB
Buffers:           40112 kB
Cached:           300212 kB
SwapCached:            0 kB
SwapTotal:       2064376 kB
SwapFree:        2064376 kB
";

    #[test]
    fn parses_real_and_old_kernel_outputs() {
        let cases: &[(&str, &str, Memory)] = &[
            (
                "Raspberry Pi 5, kernel 6.6",
                PI5_KERNEL_6_6,
                Memory {
                    total_bytes: 8245488 * KIB,
                    available_bytes: 1893440 * KIB,
                    free_bytes: 412336 * KIB,
                    buffers_bytes: 98304 * KIB,
                    cached_bytes: 1699520 * KIB,
                    swap_total_bytes: 524272 * KIB,
                    swap_free_bytes: 498160 * KIB,
                },
            ),
            (
                "x86_64 kernel 6.18, no swap",
                X86_KERNEL_6_18,
                Memory {
                    total_bytes: 24684084 * KIB,
                    available_bytes: 24307084 * KIB,
                    free_bytes: 23865636 * KIB,
                    buffers_bytes: 6112 * KIB,
                    cached_bytes: 1164560 * KIB,
                    swap_total_bytes: 0,
                    swap_free_bytes: 0,
                },
            ),
            (
                "Linux 2.6.32: available estimated as free + buffers + cached",
                OLD_KERNEL_2_6_32,
                Memory {
                    total_bytes: 1019820 * KIB,
                    available_bytes: (512320 + 40112 + 300212) * KIB,
                    free_bytes: 512320 * KIB,
                    buffers_bytes: 40112 * KIB,
                    cached_bytes: 300212 * KIB,
                    swap_total_bytes: 2064376 * KIB,
                    swap_free_bytes: 2064376 * KIB,
                },
            ),
            (
                "only MemTotal; fields we do not read may be anything",
                "Weird\u{e9}: what\nMemTotal: 4 kB\nnot a meminfo line\n",
                Memory { total_bytes: 4 * KIB, ..Memory::default() },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(parse_meminfo(input.as_bytes()).as_ref(), Ok(expected), "{name}");
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty file", b"", "no MemTotal line"),
            ("no MemTotal", b"MemFree: 1 kB\nMemAvailable: 1 kB\n", "no MemTotal line"),
            ("no value", b"MemTotal:\n", "line 1: MemTotal: no value"),
            ("not a number", b"MemTotal: lots kB\n", "\"lots\" is not a number"),
            ("negative", b"MemTotal: -1 kB\n", "\"-1\" is not a number"),
            ("no unit", b"MemTotal: 1024\n", "found unit None"),
            ("another unit", b"MemTotal: 1 MB\n", "found unit Some(\"MB\")"),
            ("trailing words", b"MemTotal: 1 kB extra\n", "expected `1 kB`"),
            ("overflows bytes", b"MemTotal: 18446744073709551615 kB\n", "overflows bytes"),
            ("a used field that is not UTF-8", b"MemTotal: 1\xff kB\n", "value is not UTF-8"),
            ("a malformed field after MemTotal", b"MemTotal: 1 kB\nSwapFree: x kB\n", "line 2: SwapFree"),
        ];
        for (name, input, message) in cases {
            match parse_meminfo(*input) {
                Err(error) => assert!(error.0.contains(message), "{name}: {:?} does not mention {message:?}", error.0),
                Ok(memory) => panic!("{name}: parsed as {memory:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_meminfo(bytes.as_slice());
        }

        #[test]
        fn mutated_real_files_never_panic(bytes in mutated(PI5_KERNEL_6_6.as_bytes())) {
            if let Ok(memory) = parse_meminfo(bytes.as_slice()) {
                prop_assert_eq!(memory.total_bytes % KIB, 0);
            }
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_fixture_trees() {
        let pi5 = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 meminfo");
        assert_eq!(pi5.total_bytes, 8245488 * KIB, "an 8 GiB Pi 5");
        assert_eq!(pi5.available_bytes, 1893440 * KIB);
        assert_eq!(pi5.swap_total_bytes, 524272 * KIB);
        assert_eq!(read(&fixture("cgroup-v1"), &mut NodeFiles::new()).expect("x86 meminfo").total_bytes, 4030340 * KIB);
        assert_eq!(read(&fixture("bare"), &mut NodeFiles::new()).expect("bare meminfo").available_bytes, 771204 * KIB);
    }

    #[test]
    fn a_missing_file_is_absent_and_a_malformed_one_is_malformed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roots = HostRoots::new(dir.path(), dir.path());
        assert!(matches!(read(&roots, &mut NodeFiles::new()), Err(SignalError::Absent { .. })));

        std::fs::write(dir.path().join("meminfo"), "MemFree: 1 kB\n").expect("write meminfo");
        let error = read(&roots, &mut NodeFiles::new()).expect_err("no MemTotal");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().ends_with("meminfo is malformed: no MemTotal line"), "{error}");
    }
}
