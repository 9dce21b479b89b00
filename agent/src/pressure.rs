//! Pressure stall information from `/proc/pressure/{cpu,memory,io}`.
//!
//! Format: Documentation/accounting/psi.rst in the kernel tree. Hand-written
//! rather than `procfs_core`'s pressure types: `parse_pressure_record`
//! panics on a file that is just `some` (it slices `&line[5..]`), and
//! `get_pressure` demands a `full` line, which the cpu file lacks before
//! Linux 5.13.

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::node_files::NodeFiles;
use crate::roots::HostRoots;
use crate::signal::{Lines, ParseError, SignalError, SignalResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
    Io,
}

impl Resource {
    /// Every resource, with its file name under `/proc/pressure`.
    pub const ALL: [(Resource, &'static str); 3] =
        [(Resource::Cpu, "cpu"), (Resource::Memory, "memory"), (Resource::Io, "io")];

    /// Its file name under `/proc/pressure`.
    pub fn proc_file(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Io => "io",
        }
    }

    /// Its file name in a v2 cgroup.
    pub fn cgroup_file(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu.pressure",
            Resource::Memory => "memory.pressure",
            Resource::Io => "io.pressure",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stall {
    /// Some tasks stalled.
    Some,
    /// All non-idle tasks stalled at once.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pressure {
    pub resource: Resource,
    pub stall: Stall,
    pub avg10: f32,
    pub avg60: f32,
    pub avg300: f32,
    /// Cumulative stall time, microseconds.
    pub total_us: u64,
}

/// Why `/proc/pressure` is missing: the kernel was built without PSI, or
/// (since 5.x, when `psi_proc_init` only creates the directory if PSI is
/// enabled) PSI was turned off at boot.
const NO_PSI: &str = "kernel without PSI (CONFIG_PSI), or PSI disabled at boot (psi=0 on the kernel command line)";

/// Older kernels create the files even when PSI is disabled at boot and
/// fail the read with EOPNOTSUPP (`psi_show`). 95 on every Linux
/// architecture (include/uapi/asm-generic/errno.h).
const EOPNOTSUPP: i32 = 95;

/// Parses one pressure file ("some ..." and, except for cpu on old kernels, "full ...").
pub fn parse_pressure(resource: Resource, reader: impl BufRead) -> Result<Vec<Pressure>, ParseError> {
    let mut readings = Vec::with_capacity(2);
    parse_pressure_into(resource, reader, &mut readings)?;
    Ok(readings)
}

/// [`parse_pressure`], appending to `all` (the readings of other resources
/// before them are left as they are).
pub fn parse_pressure_into(
    resource: Resource,
    reader: impl BufRead,
    all: &mut Vec<Pressure>,
) -> Result<(), ParseError> {
    let start = all.len();
    let mut lines = Lines::new(reader, 80);
    while let Some((line_number, line)) = lines.next_line()? {
        let text =
            std::str::from_utf8(line).map_err(|_| ParseError::new(format!("line {line_number}: not UTF-8")))?.trim();
        if text.is_empty() {
            continue;
        }
        let reading =
            parse_line(resource, text).map_err(|e| ParseError::new(format!("line {line_number}: {}", e.0)))?;
        if all[start..].iter().any(|r: &Pressure| r.stall == reading.stall) {
            return Err(ParseError::new(format!("line {line_number}: a second {:?} line", reading.stall)));
        }
        all.push(reading);
    }
    if !all[start..].iter().any(|r| r.stall == Stall::Some) {
        return Err(ParseError::new("no `some` line"));
    }
    Ok(())
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`
fn parse_line(resource: Resource, line: &str) -> Result<Pressure, ParseError> {
    let mut fields = line.split_ascii_whitespace();
    let stall = match fields.next() {
        Some("some") => Stall::Some,
        Some("full") => Stall::Full,
        other => return Err(ParseError::new(format!("expected `some` or `full`, found {other:?}"))),
    };
    let (mut avg10, mut avg60, mut avg300, mut total_us) = (None, None, None, None);
    for field in fields {
        let (key, value) =
            field.split_once('=').ok_or_else(|| ParseError::new(format!("expected key=value, found {field:?}")))?;
        match key {
            "avg10" => avg10 = Some(parse_average(key, value)?),
            "avg60" => avg60 = Some(parse_average(key, value)?),
            "avg300" => avg300 = Some(parse_average(key, value)?),
            "total" => {
                total_us = Some(value.parse().map_err(|_| ParseError::new(format!("total={value:?} is not a number")))?)
            }
            // A future kernel may add a window; what we know still parses.
            _ => {}
        }
    }
    let missing = |key: &str| ParseError::new(format!("no {key}="));
    Ok(Pressure {
        resource,
        stall,
        avg10: avg10.ok_or_else(|| missing("avg10"))?,
        avg60: avg60.ok_or_else(|| missing("avg60"))?,
        avg300: avg300.ok_or_else(|| missing("avg300"))?,
        total_us: total_us.ok_or_else(|| missing("total"))?,
    })
}

/// A share of time in percent, printed as `%lu.%02lu` by the kernel, so
/// finite and not negative; `f32::from_str` alone would also take "inf",
/// "NaN" or "-1".
fn parse_average(key: &str, value: &str) -> Result<f32, ParseError> {
    match value.parse::<f32>() {
        Ok(percent) if percent.is_finite() && percent >= 0.0 => Ok(percent),
        _ => Err(ParseError::new(format!("{key}={value:?} is not a percentage"))),
    }
}

/// Reads all three pressure files; absent when the kernel has no PSI.
/// A missing file leaves out that resource only.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Vec<Pressure>> {
    let mut readings = Vec::with_capacity(6);
    read_into(roots, files, &mut readings)?;
    Ok(readings)
}

/// [`read`] into `readings`, reusing it.
pub fn read_into(roots: &HostRoots, files: &mut NodeFiles, readings: &mut Vec<Pressure>) -> SignalResult<()> {
    read_files_into(files, (&roots.proc, Some("pressure")), Resource::proc_file, NO_PSI, readings)
}

/// Reads the pressure file `<dir>/<file_name(resource)>` of every resource
/// (`dir` is a base with the directory below it, if any):
/// the host's `/proc/pressure/<name>`, or a v2 cgroup's `<name>.pressure`
/// (same format, Documentation/accounting/psi.rst, "Cgroup2 interface"),
/// into `readings`. Absent, with `why_absent` (or the boot-time switch),
/// when none of them can be read.
pub fn read_files_into(
    files: &mut NodeFiles,
    (base, below): (&Path, Option<&str>),
    file_name: impl Fn(Resource) -> &'static str,
    why_absent: &'static str,
    readings: &mut Vec<Pressure>,
) -> SignalResult<()> {
    readings.clear();
    let mut disabled = false;
    let dir = || below.map_or_else(|| base.to_path_buf(), |below| base.join(below));
    for (resource, _) in Resource::ALL {
        let name = file_name(resource);
        let read = match below {
            Some(below) => files.read_at(base, &[below, name]),
            None => files.read_at(base, &[name]),
        };
        match read {
            Ok(bytes) => parse_pressure_into(resource, bytes, readings).map_err(|e| e.at(&dir().join(name)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(EOPNOTSUPP) => disabled = true,
            Err(source) => return Err(SignalError::Io { path: dir().join(name), source }),
        }
    }
    if readings.is_empty() {
        return Err(absent(
            &dir(),
            if disabled { "PSI disabled at boot (psi=0 on the kernel command line)" } else { why_absent },
        ));
    }
    Ok(())
}

fn absent(dir: &Path, why: &'static str) -> SignalError {
    SignalError::Absent { path: dir.to_path_buf(), why: why.into() }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cpu::mutation::mutated;

    fn reading(resource: Resource, stall: Stall, avgs: [f32; 3], total_us: u64) -> Pressure {
        let [avg10, avg60, avg300] = avgs;
        Pressure { resource, stall, avg10, avg60, avg300, total_us }
    }

    /// Raspberry Pi 5, kernel 6.6: cpu has a `full` line (always 0 at the
    /// system level, psi.rst) since 5.13.
    const PI5_KERNEL_6_6_CPU: &str =
        "some avg10=62.18 avg60=58.40 avg300=51.07 total=48211734211\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

    #[test]
    fn parses_real_and_old_kernel_outputs() {
        use Resource::*;
        use Stall::*;
        let cases: &[(&str, Resource, &str, Vec<Pressure>)] = &[
            (
                "Raspberry Pi 5, kernel 6.6, cpu",
                Cpu,
                PI5_KERNEL_6_6_CPU,
                vec![reading(Cpu, Some, [62.18, 58.40, 51.07], 48211734211), reading(Cpu, Full, [0.0; 3], 0)],
            ),
            (
                "x86_64 kernel 6.18, memory",
                Memory,
                "some avg10=0.37 avg60=0.21 avg300=0.67 total=6829847\nfull avg10=0.18 avg60=0.16 avg300=0.61 total=6334674\n",
                vec![
                    reading(Memory, Some, [0.37, 0.21, 0.67], 6829847),
                    reading(Memory, Full, [0.18, 0.16, 0.61], 6334674),
                ],
            ),
            (
                "Linux 5.4: cpu has only a `some` line",
                Cpu,
                "some avg10=1.53 avg60=0.87 avg300=0.41 total=2219371\n",
                vec![reading(Cpu, Some, [1.53, 0.87, 0.41], 2219371)],
            ),
            (
                "fully stalled, and a key a later kernel might add",
                Io,
                "some avg10=100.00 avg60=99.50 avg300=97.25 avg900=90.00 total=18446744073709551615\n",
                vec![reading(Io, Some, [100.0, 99.5, 97.25], u64::MAX)],
            ),
        ];
        for (name, resource, input, expected) in cases {
            assert_eq!(parse_pressure(*resource, input.as_bytes()).as_ref(), Ok(expected), "{name}");
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty file", b"", "no `some` line"),
            ("only full", b"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "no `some` line"),
            ("a bare `some`", b"some\n", "line 1: no avg10="),
            ("another word", b"most avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "expected `some` or `full`"),
            ("no total", b"some avg10=0.00 avg60=0.00 avg300=0.00\n", "no total="),
            ("no avg60", b"some avg10=0.00 avg300=0.00 total=1\n", "no avg60="),
            ("not key=value", b"some avg10 0.00 avg60=0.00 avg300=0.00 total=1\n", "expected key=value"),
            ("a word for a share", b"some avg10=high avg60=0.00 avg300=0.00 total=1\n", "avg10=\"high\""),
            ("NaN", b"some avg10=NaN avg60=0.00 avg300=0.00 total=1\n", "is not a percentage"),
            ("negative", b"some avg10=0.00 avg60=-1.00 avg300=0.00 total=1\n", "avg60=\"-1.00\" is not a percentage"),
            ("infinite", b"some avg10=0.00 avg60=0.00 avg300=inf total=1\n", "is not a percentage"),
            ("negative total", b"some avg10=0.00 avg60=0.00 avg300=0.00 total=-5\n", "total=\"-5\" is not a number"),
            (
                "two some lines",
                b"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                "line 2: a second Some line",
            ),
            ("not UTF-8", b"some avg10=\xff avg60=0.00 avg300=0.00 total=0\n", "line 1: not UTF-8"),
        ];
        for (name, input, message) in cases {
            match parse_pressure(Resource::Io, *input) {
                Err(error) => assert!(error.0.contains(message), "{name}: {:?} does not mention {message:?}", error.0),
                Ok(readings) => panic!("{name}: parsed as {readings:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_pressure(Resource::Cpu, bytes.as_slice());
        }

        #[test]
        fn mutated_real_files_never_panic(bytes in mutated(PI5_KERNEL_6_6_CPU.as_bytes())) {
            if let Ok(readings) = parse_pressure(Resource::Cpu, bytes.as_slice()) {
                prop_assert!(readings.iter().all(|r| r.avg10.is_finite() && r.avg10 >= 0.0));
            }
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_pi5_fixture() {
        let readings = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 pressure");
        let kinds: Vec<_> = readings.iter().map(|r| (r.resource, r.stall)).collect();
        use Resource::*;
        use Stall::*;
        assert_eq!(kinds, [(Cpu, Some), (Cpu, Full), (Memory, Some), (Memory, Full), (Io, Some), (Io, Full)]);
        assert_eq!(readings[0], reading(Cpu, Some, [62.18, 58.40, 51.07], 48211734211));
        assert_eq!(readings[3], reading(Memory, Full, [1.98, 1.75, 1.31], 612458812));
    }

    #[test]
    fn a_kernel_without_psi_is_absent_with_the_reason() {
        for tree in ["bare", "cgroup-v1"] {
            match read(&fixture(tree), &mut NodeFiles::new()) {
                Err(SignalError::Absent { path, why }) => {
                    assert!(path.ends_with("proc/pressure"), "{tree}: {}", path.display());
                    assert!(why.contains("kernel without PSI (CONFIG_PSI)"), "{tree}: {why}");
                }
                other => panic!("{tree}: expected absent, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_file_leaves_out_only_its_resource_and_a_malformed_one_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pressure = dir.path().join("pressure");
        std::fs::create_dir(&pressure).expect("pressure dir");
        let roots = HostRoots::new(dir.path(), dir.path());
        assert!(
            matches!(read(&roots, &mut NodeFiles::new()), Err(SignalError::Absent { .. })),
            "an empty directory has no readings"
        );

        std::fs::write(pressure.join("memory"), "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").expect("memory");
        std::fs::write(pressure.join("io"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n").expect("io");
        let readings = read(&roots, &mut NodeFiles::new()).expect("memory and io without cpu");
        assert_eq!(readings.iter().map(|r| r.resource).collect::<Vec<_>>(), [Resource::Memory, Resource::Io]);

        std::fs::write(pressure.join("cpu"), "some avg10=1.00\n").expect("cpu");
        let error = read(&roots, &mut NodeFiles::new()).expect_err("a truncated cpu file");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains("pressure/cpu is malformed: line 1: no avg60="), "{error}");
    }
}
