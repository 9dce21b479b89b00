//! Raspberry Pi firmware throttling (`get_throttled`), decoded into named flags.
//!
//! The Raspberry Pi kernel's firmware driver (drivers/firmware/raspberrypi.c)
//! exposes the firmware's throttle word in sysfs as lowercase hex without a
//! prefix; `vcgencmd get_throttled` prints the same word as
//! `throttled=0x50005`. Both forms are accepted.

use std::path::Path;

use serde::Serialize;

use crate::node_files::{NodeFiles, path_of};
use crate::reuse::{Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalError, SignalResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThrottleFlags {
    pub under_voltage: bool,
    pub arm_frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttle {
    pub raw: u32,
    pub now: ThrottleFlags,
    pub since_boot: ThrottleFlags,
}

/// Bit layout from the Raspberry Pi documentation, "vcgencmd get_throttled"
/// (<https://www.raspberrypi.com/documentation/computers/os.html#get_throttled>):
/// bit 0 under-voltage detected, 1 arm frequency capped, 2 currently
/// throttled, 3 soft temperature limit active; bits 16-19 the same four
/// conditions "has occurred" since boot.
const UNDER_VOLTAGE: u32 = 1 << 0;
const ARM_FREQUENCY_CAPPED: u32 = 1 << 1;
const THROTTLED: u32 = 1 << 2;
const SOFT_TEMPERATURE_LIMIT: u32 = 1 << 3;
const SINCE_BOOT_SHIFT: u32 = 16;

/// Decodes the firmware's throttle word. Bits outside 0-3 and 16-19 are
/// kept in `raw` only.
pub fn decode(raw: u32) -> Throttle {
    let flags = |bits: u32| ThrottleFlags {
        under_voltage: bits & UNDER_VOLTAGE != 0,
        arm_frequency_capped: bits & ARM_FREQUENCY_CAPPED != 0,
        throttled: bits & THROTTLED != 0,
        soft_temperature_limit: bits & SOFT_TEMPERATURE_LIMIT != 0,
    };
    Throttle { raw, now: flags(raw), since_boot: flags(raw >> SINCE_BOOT_SHIFT) }
}

/// Parses `50005`, `0x50005` or `throttled=0x50005` (surrounding whitespace allowed).
pub fn parse_get_throttled(text: &str) -> Result<u32, ParseError> {
    let trimmed = text.trim();
    let value = trimmed.strip_prefix("throttled=").unwrap_or(trimmed);
    let digits = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")).unwrap_or(value);
    // from_str_radix alone would accept a leading '+'.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::new(format!("expected a hexadecimal throttle word, found {trimmed:?}")));
    }
    u32::from_str_radix(digits, 16).map_err(|_| ParseError::new(format!("throttle word {trimmed:?} exceeds 32 bits")))
}

const NOT_A_PI: &str =
    "no Raspberry Pi firmware get_throttled (not a Raspberry Pi, or its firmware driver is not loaded)";

/// Where the SoC nodes are below the sys root.
const PLATFORM: &str = "devices/platform";

/// The SoC and firmware nodes of the last search, kept between samples so
/// that finding the same file again costs no allocation.
#[derive(Debug, Default)]
pub struct ThrottleScratch {
    socs: Vec<String>,
    firmwares: Vec<String>,
}

/// Finds `<sys-root>/devices/platform/soc*/*firmware*/get_throttled`. The
/// SoC node is `soc` on a Pi 4 and `soc@107c000000` on a Pi 5, and the
/// firmware node is named after it, hence the two wildcards. The first
/// match in name order wins: `Some((soc, firmware))`, indices into
/// `scratch.socs` and `scratch.firmwares`.
fn find_get_throttled(
    sys: &Path,
    files: &mut NodeFiles,
    scratch: &mut ThrottleScratch,
) -> SignalResult<Option<(usize, usize)>> {
    matching_entries(files, (sys, &[PLATFORM]), |name| name.starts_with("soc"), &mut scratch.socs)?;
    for (soc_index, soc) in scratch.socs.iter().enumerate() {
        let soc_dir = [PLATFORM, soc.as_str()];
        matching_entries(files, (sys, &soc_dir), |name| name.contains("firmware"), &mut scratch.firmwares)?;
        for (firmware_index, firmware) in scratch.firmwares.iter().enumerate() {
            let dir = [PLATFORM, soc.as_str(), firmware.as_str()];
            let names =
                files.list_at(sys, &dir).map_err(|source| SignalError::Io { path: path_of(sys, &dir), source })?;
            if names.unwrap_or_default().iter().any(|name| name == "get_throttled") {
                return Ok(Some((soc_index, firmware_index)));
            }
        }
    }
    Ok(None)
}

/// Entries of a directory (`base` and the parts below it) whose name
/// passes `keep`, sorted, into `found`; none if the directory is missing.
fn matching_entries(
    files: &mut NodeFiles,
    (base, dir): (&Path, &[&str]),
    keep: impl Fn(&str) -> bool,
    found: &mut Vec<String>,
) -> SignalResult<()> {
    let names = files.list_at(base, dir).map_err(|source| SignalError::Io { path: path_of(base, dir), source })?;
    let mut found = Refill::new(found);
    for name in names.unwrap_or_default().iter().filter(|name| keep(name)) {
        set_str(found.next_slot(), name);
    }
    Ok(())
}

/// Reads the firmware's `get_throttled`; absent on anything but a Pi.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Throttle> {
    read_with(roots, files, &mut ThrottleScratch::default())
}

/// [`read`], keeping what it found in `scratch`.
pub fn read_with(roots: &HostRoots, files: &mut NodeFiles, scratch: &mut ThrottleScratch) -> SignalResult<Throttle> {
    let sys = roots.sys.as_path();
    let (soc, firmware) = find_get_throttled(sys, files, scratch)?.ok_or_else(|| SignalError::Absent {
        path: path_of(sys, &[PLATFORM, "soc*/*firmware*/get_throttled"]),
        why: NOT_A_PI.into(),
    })?;
    let file = [PLATFORM, scratch.socs[soc].as_str(), scratch.firmwares[firmware].as_str(), "get_throttled"];
    files.read_parsed_at(sys, &file, NOT_A_PI, parse_get_throttled).map(decode)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn flags(
        under_voltage: bool,
        arm_frequency_capped: bool,
        throttled: bool,
        soft_temperature_limit: bool,
    ) -> ThrottleFlags {
        ThrottleFlags { under_voltage, arm_frequency_capped, throttled, soft_temperature_limit }
    }

    const NONE: ThrottleFlags = ThrottleFlags {
        under_voltage: false,
        arm_frequency_capped: false,
        throttled: false,
        soft_temperature_limit: false,
    };

    #[test]
    fn decodes_each_documented_bit() {
        let cases: &[(u32, ThrottleFlags, ThrottleFlags)] = &[
            (0x0, NONE, NONE),
            (0x1, flags(true, false, false, false), NONE),
            (0x2, flags(false, true, false, false), NONE),
            (0x4, flags(false, false, true, false), NONE),
            (0x8, flags(false, false, false, true), NONE),
            (0x1_0000, NONE, flags(true, false, false, false)),
            (0x2_0000, NONE, flags(false, true, false, false)),
            (0x4_0000, NONE, flags(false, false, true, false)),
            (0x8_0000, NONE, flags(false, false, false, true)),
            // Under-voltage and throttled now, and both since boot.
            (0x5_0005, flags(true, false, true, false), flags(true, false, true, false)),
            // A Pi that overheated earlier and has cooled down since.
            (0xe_0000, NONE, flags(false, true, true, true)),
            // Undocumented bits are kept in `raw` and set no flag.
            (0xfff0_fff0, NONE, NONE),
            (u32::MAX, flags(true, true, true, true), flags(true, true, true, true)),
        ];
        for &(raw, now, since_boot) in cases {
            assert_eq!(decode(raw), Throttle { raw, now, since_boot }, "{raw:#x}");
        }
    }

    #[test]
    fn parses_the_sysfs_and_vcgencmd_forms() {
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("50005\n", Ok(0x50005)),
            ("0\n", Ok(0)),
            ("0x50005", Ok(0x50005)),
            ("0XE0000", Ok(0xe0000)),
            ("throttled=0x50005\n", Ok(0x50005)),
            ("throttled=0x0", Ok(0)),
            ("  80008  ", Ok(0x80008)),
            ("ffffffff", Ok(u32::MAX)),
            ("", Err("expected a hexadecimal throttle word, found \"\"")),
            ("0x", Err("expected a hexadecimal throttle word")),
            ("throttled=", Err("expected a hexadecimal throttle word")),
            ("+5", Err("expected a hexadecimal throttle word")),
            ("0x5 0x6", Err("expected a hexadecimal throttle word")),
            ("throttled=0xg", Err("found \"throttled=0xg\"")),
            ("100000000", Err("exceeds 32 bits")),
        ];
        for (input, expected) in cases {
            match (parse_get_throttled(input), expected) {
                (Ok(raw), Ok(want)) => assert_eq!(raw, *want, "{input:?}"),
                (Err(error), Err(message)) => assert!(error.0.contains(message), "{input:?}: {}", error.0),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_get_throttled(&text);
        }

        #[test]
        fn every_word_round_trips_through_both_forms(raw in any::<u32>()) {
            prop_assert_eq!(parse_get_throttled(&format!("{raw:x}\n")), Ok(raw));
            prop_assert_eq!(parse_get_throttled(&format!("throttled={raw:#x}")), Ok(raw));
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_pi5_fixture_through_the_glob() {
        let throttle = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 get_throttled");
        let under_voltage_and_throttled = flags(true, false, true, false);
        assert_eq!(
            throttle,
            Throttle { raw: 0x50005, now: under_voltage_and_throttled, since_boot: under_voltage_and_throttled }
        );
    }

    #[test]
    fn finds_the_pi4_layout_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let firmware = dir.path().join("devices/platform/soc/soc:firmware");
        std::fs::create_dir_all(&firmware).expect("firmware dir");
        std::fs::create_dir_all(dir.path().join("devices/platform/serial8250")).expect("another device");
        std::fs::write(firmware.join("get_throttled"), "e0000\n").expect("get_throttled");
        let throttle = read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()).expect("pi4 get_throttled");
        assert_eq!(throttle.raw, 0xe0000);
        assert_eq!(throttle.now, NONE);
    }

    #[test]
    fn anything_but_a_pi_is_absent_with_the_reason() {
        for tree in ["bare", "cgroup-v1"] {
            match read(&fixture(tree), &mut NodeFiles::new()) {
                Err(SignalError::Absent { why, .. }) => assert!(why.contains("not a Raspberry Pi"), "{tree}: {why}"),
                other => panic!("{tree}: expected absent, got {other:?}"),
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("devices/platform/soc/soc:gpu")).expect("a soc without firmware");
        assert!(matches!(
            read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()),
            Err(SignalError::Absent { .. })
        ));
    }

    #[test]
    fn a_malformed_word_is_malformed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let firmware = dir.path().join("devices/platform/soc@107c000000/soc@107c000000:firmware");
        std::fs::create_dir_all(&firmware).expect("firmware dir");
        std::fs::write(firmware.join("get_throttled"), "throttled=maybe\n").expect("get_throttled");
        let error = read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()).expect_err("not hex");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains("get_throttled is malformed: expected a hexadecimal"), "{error}");
    }
}
