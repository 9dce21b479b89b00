//! Temperatures, fans and under-voltage alarms from thermal zones and hwmon.
//!
//! Thermal zones: Documentation/driver-api/thermal/sysfs-api.rst (`type`,
//! `temp` in millidegrees Celsius). hwmon: Documentation/hwmon/sysfs-interface.rst
//! (`name`, `temp<N>_input` in millidegrees Celsius, `fan<N>_input` in RPM,
//! `in<N>_*alarm` 0 or 1). On a Pi 5 the under-voltage alarm is
//! `in0_lcrit_alarm` of the `rpi_volt` device.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::node_files::{NodeFiles, path_of};
use crate::reuse::{Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalError, SignalResult, parse_i64, parse_u64};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Temperature {
    /// `thermal_zone0/cpu-thermal` or `hwmon1/rp1_adc/temp1`.
    pub sensor: String,
    pub millidegrees_celsius: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fan {
    /// `hwmon2/pwmfan/fan1`.
    pub sensor: String,
    pub rpm: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VoltageAlarm {
    /// `hwmon3/rpi_volt/in0_lcrit_alarm`.
    pub sensor: String,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Thermals {
    pub temperatures: Vec<Temperature>,
    pub fans: Vec<Fan>,
    pub voltage_alarms: Vec<VoltageAlarm>,
}

const NO_SENSORS: &str = "no thermal zone and no hwmon device (usual in virtual machines)";

/// Errors with which real sensors say "no reading right now": EAGAIN
/// (11), EINVAL (22) and ENODATA (61), e.g. a Wi-Fi card's zone while the
/// interface is down, or an ACPI zone that fails to evaluate (Linux
/// asm-generic errno values, the same on arm64 and x86_64). Such a sensor
/// is skipped; the rest are still reported.
const NO_READING_ERRNOS: [i32; 3] = [11, 22, 61];

/// The kind of an hwmon attribute we read, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HwmonAttribute {
    /// `temp<N>_input`
    Temperature(u32),
    /// `fan<N>_input`
    Fan(u32),
    /// `in<N>_alarm`, `in<N>_lcrit_alarm`, `in<N>_min_alarm`, ...
    VoltageAlarm(u32),
}

/// A placeholder for a slot about to be filled.
impl Default for HwmonAttribute {
    fn default() -> Self {
        Self::Temperature(0)
    }
}

/// Classifies an hwmon file name; `None` for everything we do not read.
fn hwmon_attribute(file_name: &str) -> Option<HwmonAttribute> {
    if let Some(index) = file_name.strip_prefix("temp").and_then(|rest| rest.strip_suffix("_input")) {
        return number(index).map(HwmonAttribute::Temperature);
    }
    if let Some(index) = file_name.strip_prefix("fan").and_then(|rest| rest.strip_suffix("_input")) {
        return number(index).map(HwmonAttribute::Fan);
    }
    let rest = file_name.strip_prefix("in")?.strip_suffix("alarm")?;
    let (index, qualifier) = rest.split_once('_')?;
    // sysfs-interface.rst: in<N>_alarm and in<N>_{min,max,lcrit,crit}_alarm.
    if matches!(qualifier, "" | "min_" | "max_" | "lcrit_" | "crit_") {
        number(index).map(HwmonAttribute::VoltageAlarm)
    } else {
        None
    }
}

/// Decimal digits only (`str::parse` would also take a leading '+').
fn number(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Parses an alarm attribute: `0` or `1`.
pub fn parse_alarm(text: &str) -> Result<bool, ParseError> {
    match text.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(ParseError::new(format!("expected an alarm of 0 or 1, found {other:?}"))),
    }
}

/// Reads every thermal zone and hwmon device; absent when the node has neither.
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Thermals> {
    let mut thermals = Thermals::default();
    read_into(roots, files, &mut ThermalScratch::default(), &mut thermals)?;
    Ok(thermals)
}

/// What reading the sensors keeps between samples: the entries of the last
/// listings and the device name at hand, so that the same sensors as last
/// time cost no allocation.
#[derive(Debug, Default)]
pub struct ThermalScratch {
    zones: Vec<(u32, String)>,
    hwmons: Vec<(u32, String)>,
    attributes: Vec<(HwmonAttribute, String)>,
    device_name: String,
}

/// Where the readings go, each list refilled in place.
struct Readings<'a> {
    temperatures: Refill<'a, Temperature>,
    fans: Refill<'a, Fan>,
    voltage_alarms: Refill<'a, VoltageAlarm>,
}

/// [`read`] into `thermals`, overwriting its readings in place.
pub fn read_into(
    roots: &HostRoots,
    files: &mut NodeFiles,
    scratch: &mut ThermalScratch,
    thermals: &mut Thermals,
) -> SignalResult<()> {
    let sys = roots.sys.as_path();
    numbered_entries(files, (sys, "class/thermal"), "thermal_zone", &mut scratch.zones)?;
    numbered_entries(files, (sys, "class/hwmon"), "hwmon", &mut scratch.hwmons)?;
    if scratch.zones.is_empty() && scratch.hwmons.is_empty() {
        return Err(SignalError::Absent { path: path_of(sys, &["class/thermal"]), why: NO_SENSORS.into() });
    }
    let Thermals { temperatures, fans, voltage_alarms } = thermals;
    let mut readings = Readings {
        temperatures: Refill::new(temperatures),
        fans: Refill::new(fans),
        voltage_alarms: Refill::new(voltage_alarms),
    };
    for (_, name) in &scratch.zones {
        read_zone(sys, name, files, &mut readings)?;
    }
    for (_, name) in &scratch.hwmons {
        read_hwmon(sys, name, files, (&mut scratch.attributes, &mut scratch.device_name), &mut readings)?;
    }
    Ok(())
}

/// `thermal_zone<N>`: its `type` names the sensor, `temp` is the reading.
fn read_zone(sys: &Path, name: &str, files: &mut NodeFiles, readings: &mut Readings<'_>) -> SignalResult<()> {
    let temperatures = &mut readings.temperatures;
    let Some(kind) = read_attribute(files, sys, &["class/thermal", name, "type"])? else { return Ok(()) };
    let slot = temperatures.next_slot();
    write_sensor(&mut slot.sensor, format_args!("{name}/{}", kind.trim()));
    let temp_path = ["class/thermal", name, "temp"];
    let Some(temp) = read_attribute(files, sys, &temp_path)? else {
        temperatures.undo_last();
        return Ok(());
    };
    slot.millidegrees_celsius = parse_i64(&temp).map_err(|e| e.at(&path_of(sys, &temp_path)))?;
    Ok(())
}

/// `hwmon<N>`: attributes sit in its own directory, or, for drivers that
/// predate `hwmon_device_register_with_groups` (Linux 3.13), on the parent
/// device, reached through `device/`.
fn read_hwmon(
    sys: &Path,
    name: &str,
    files: &mut NodeFiles,
    (attributes, device_name): (&mut Vec<(HwmonAttribute, String)>, &mut String),
    readings: &mut Readings<'_>,
) -> SignalResult<()> {
    let own = ["class/hwmon", name, ""];
    let legacy = ["class/hwmon", name, "device", ""];
    let dir: &[&str] = match read_attribute(files, sys, &["class/hwmon", name, "name"])? {
        Some(text) => {
            set_str(device_name, text.trim());
            &own[..2]
        }
        None => match read_attribute(files, sys, &["class/hwmon", name, "device", "name"])? {
            Some(text) => {
                set_str(device_name, text.trim());
                &legacy[..3]
            }
            None => return Ok(()),
        },
    };
    let listed = files.list_at(sys, dir).map_err(|source| SignalError::Io { path: path_of(sys, dir), source })?;
    {
        let mut found = Refill::new(attributes);
        for file_name in listed.unwrap_or_default() {
            let Some(attribute) = hwmon_attribute(file_name) else { continue };
            let slot = found.next_slot();
            slot.0 = attribute;
            set_str(&mut slot.1, file_name);
        }
    }
    attributes.sort();
    let mut parts = legacy;
    for (attribute, file_name) in attributes.iter() {
        parts[dir.len()] = file_name;
        let path = &parts[..=dir.len()];
        let Some(text) = read_attribute(files, sys, path)? else { continue };
        let device_name = device_name.as_str();
        match *attribute {
            HwmonAttribute::Temperature(index) => {
                let millidegrees_celsius = parse_i64(&text).map_err(|e| e.at(&path_of(sys, path)))?;
                let slot = readings.temperatures.next_slot();
                write_sensor(&mut slot.sensor, format_args!("{name}/{device_name}/temp{index}"));
                slot.millidegrees_celsius = millidegrees_celsius;
            }
            HwmonAttribute::Fan(index) => {
                let rpm = parse_u64(&text).map_err(|e| e.at(&path_of(sys, path)))?;
                let slot = readings.fans.next_slot();
                write_sensor(&mut slot.sensor, format_args!("{name}/{device_name}/fan{index}"));
                slot.rpm = rpm;
            }
            HwmonAttribute::VoltageAlarm(_) => {
                let active = parse_alarm(&text).map_err(|e| e.at(&path_of(sys, path)))?;
                let slot = readings.voltage_alarms.next_slot();
                write_sensor(&mut slot.sensor, format_args!("{name}/{device_name}/{file_name}"));
                slot.active = active;
            }
        }
    }
    Ok(())
}

/// Writes a sensor's name over the one its slot held, keeping the buffer.
fn write_sensor(sensor: &mut String, name: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    sensor.clear();
    // Writing to a String cannot fail.
    let _ = sensor.write_fmt(name);
}

/// Entries `<prefix><N>` of a class directory (`base` and the directory
/// below it), in number order (so `thermal_zone10` comes after
/// `thermal_zone2`), into `numbered`; none if it is missing.
fn numbered_entries(
    files: &mut NodeFiles,
    (base, dir): (&Path, &str),
    prefix: &str,
    numbered: &mut Vec<(u32, String)>,
) -> SignalResult<()> {
    let listed = files.list_at(base, &[dir]).map_err(|source| SignalError::Io { path: base.join(dir), source })?;
    {
        let mut found = Refill::new(numbered);
        for name in listed.unwrap_or_default() {
            let Some(number) = name.strip_prefix(prefix).and_then(number) else { continue };
            let slot = found.next_slot();
            slot.0 = number;
            set_str(&mut slot.1, name);
        }
    }
    numbered.sort();
    Ok(())
}

/// A sensor attribute, or `None` when the sensor has no reading now (the
/// file vanished, or the driver answered one of [`NO_READING_ERRNOS`]).
/// Bytes that are not UTF-8 are decoded lossily and then fail to parse.
fn read_attribute<'a>(files: &'a mut NodeFiles, sys: &Path, parts: &[&str]) -> SignalResult<Option<Cow<'a, str>>> {
    match files.read_at(sys, parts) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(bytes))),
        Err(e) if means_no_reading(&e) => Ok(None),
        Err(source) => Err(SignalError::Io { path: path_of(sys, parts), source }),
    }
}

fn means_no_reading(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || error.raw_os_error().is_some_and(|errno| NO_READING_ERRNOS.contains(&errno))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn classifies_hwmon_file_names() {
        use HwmonAttribute::*;
        let cases = [
            ("temp1_input", Some(Temperature(1))),
            ("temp12_input", Some(Temperature(12))),
            ("fan1_input", Some(Fan(1))),
            ("in0_lcrit_alarm", Some(VoltageAlarm(0))),
            ("in3_alarm", Some(VoltageAlarm(3))),
            ("in1_min_alarm", Some(VoltageAlarm(1))),
            ("in1_crit_alarm", Some(VoltageAlarm(1))),
            ("in1_input", None),
            ("temp1_crit", None),
            ("temp1_label", None),
            ("temp_input", None),
            ("temp+1_input", None),
            ("fan1_target", None),
            ("intrusion0_alarm", None),
            ("in0_beep_alarm", None),
            ("pwm1", None),
            ("name", None),
        ];
        for (file_name, expected) in cases {
            assert_eq!(hwmon_attribute(file_name), expected, "{file_name}");
        }
    }

    #[test]
    fn parses_alarms() {
        let cases: &[(&str, Result<bool, &str>)] = &[
            ("0\n", Ok(false)),
            ("1\n", Ok(true)),
            ("1", Ok(true)),
            ("2\n", Err("expected an alarm of 0 or 1, found \"2\"")),
            ("", Err("found \"\"")),
            ("yes", Err("found \"yes\"")),
        ];
        for (input, expected) in cases {
            match (parse_alarm(input), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input:?}"),
                (Err(error), Err(message)) => assert!(error.0.contains(message), "{input:?}: {}", error.0),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn sensors_without_a_reading_are_told_apart_from_real_errors() {
        let cases = [
            (io::Error::from(io::ErrorKind::NotFound), true),
            (io::Error::from_raw_os_error(22), true),  // EINVAL
            (io::Error::from_raw_os_error(61), true),  // ENODATA
            (io::Error::from_raw_os_error(11), true),  // EAGAIN
            (io::Error::from_raw_os_error(13), false), // EACCES: a mount or permission problem
            (io::Error::from_raw_os_error(5), false),  // EIO
        ];
        for (error, expected) in cases {
            assert_eq!(means_no_reading(&error), expected, "{error}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_names_and_values_never_panic(name in ".{0,24}", value in ".{0,24}") {
            let _ = hwmon_attribute(&name);
            let _ = parse_alarm(&value);
        }
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    fn temperature(sensor: &str, millidegrees_celsius: i64) -> Temperature {
        Temperature { sensor: sensor.to_string(), millidegrees_celsius }
    }

    #[test]
    fn reads_the_pi5_fixture() {
        let thermals = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 thermals");
        assert_eq!(
            thermals,
            Thermals {
                temperatures: vec![
                    temperature("thermal_zone0/cpu-thermal", 81500),
                    temperature("hwmon0/cpu_thermal/temp1", 81500),
                    temperature("hwmon1/rp1_adc/temp1", 56733),
                ],
                fans: vec![Fan { sensor: "hwmon2/pwmfan/fan1".to_string(), rpm: 6872 }],
                voltage_alarms: vec![VoltageAlarm {
                    sensor: "hwmon3/rpi_volt/in0_lcrit_alarm".to_string(),
                    active: true
                }],
            }
        );
    }

    #[test]
    fn a_node_without_sensors_is_absent_with_the_reason() {
        for tree in ["bare", "cgroup-v1"] {
            match read(&fixture(tree), &mut NodeFiles::new()) {
                Err(SignalError::Absent { why, .. }) => {
                    assert!(why.contains("no thermal zone and no hwmon"), "{tree}: {why}")
                }
                other => panic!("{tree}: expected absent, got {other:?}"),
            }
        }
        // Like this VM: /sys/class/thermal exists, holds no zone, and there is no hwmon class.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("class/thermal/cooling_device0")).expect("a cooling device only");
        assert!(matches!(
            read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()),
            Err(SignalError::Absent { .. })
        ));
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        std::fs::write(path, content).expect("write");
    }

    #[test]
    fn orders_by_number_reads_legacy_hwmon_and_negative_temperatures() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sys = dir.path();
        write(sys, "class/thermal/thermal_zone10/type", "x86_pkg_temp\n");
        write(sys, "class/thermal/thermal_zone10/temp", "47000\n");
        write(sys, "class/thermal/thermal_zone2/type", "acpitz\n");
        write(sys, "class/thermal/thermal_zone2/temp", "-5000\n");
        // A zone that vanished between listing and reading is skipped.
        std::fs::create_dir_all(sys.join("class/thermal/thermal_zone3")).expect("empty zone");
        write(sys, "class/hwmon/hwmon0/device/name", "it8728\n");
        write(sys, "class/hwmon/hwmon0/device/temp2_input", "39000\n");
        write(sys, "class/hwmon/hwmon0/device/temp10_input", "41000\n");
        write(sys, "class/hwmon/hwmon0/device/fan2_input", "0\n");
        let thermals = read(&HostRoots::new(sys, sys), &mut NodeFiles::new()).expect("thermals");
        assert_eq!(
            thermals.temperatures,
            [
                temperature("thermal_zone2/acpitz", -5000),
                temperature("thermal_zone10/x86_pkg_temp", 47000),
                temperature("hwmon0/it8728/temp2", 39000),
                temperature("hwmon0/it8728/temp10", 41000),
            ]
        );
        assert_eq!(thermals.fans, [Fan { sensor: "hwmon0/it8728/fan2".to_string(), rpm: 0 }]);
    }

    #[test]
    fn a_malformed_reading_is_malformed() {
        let cases = [
            ("class/thermal/thermal_zone0/temp", "hot\n", "thermal_zone0/temp is malformed"),
            ("class/hwmon/hwmon0/fan1_input", "-20\n", "hwmon0/fan1_input is malformed"),
            ("class/hwmon/hwmon0/in0_lcrit_alarm", "on\n", "hwmon0/in0_lcrit_alarm is malformed"),
        ];
        for (rel, content, message) in cases {
            let dir = tempfile::tempdir().expect("temp dir");
            write(dir.path(), "class/thermal/thermal_zone0/type", "cpu-thermal\n");
            write(dir.path(), "class/hwmon/hwmon0/name", "rpi_volt\n");
            write(dir.path(), rel, content);
            let error = read(&HostRoots::new(dir.path(), dir.path()), &mut NodeFiles::new()).expect_err(rel);
            assert!(error.is_malformed(), "{rel}: {error}");
            assert!(error.to_string().contains(message), "{rel}: {error}");
        }
    }
}
