//! Which temperature sensors measure the CPU or SoC: a drive, a Wi-Fi card or a GPU at 80 C says
//! nothing about the CPU throttling, so only these count as the node's temperature. Sensors are
//! named as the agent names them: `thermal_zone<N>/<type>` (the zone's `type` file) or
//! `hwmon<N>/<name>/temp<M>` (the chip's `name` file).

use bakery_proto::v1::Temperature;

/// Zone types and hwmon chip names of CPU and SoC sensors: the Raspberry Pi's `cpu-thermal`
/// zone, Intel's `x86_pkg_temp` zone and `coretemp` chip, AMD's `k10temp`/`k8temp`/`zenpower`
/// chips and their `Tctl` label, and the generic `soc`/`cpu` zones of ARM boards.
const CPU_SENSORS: [&str; 8] = ["cpu", "soc", "x86_pkg_temp", "coretemp", "k10temp", "k8temp", "zenpower", "tctl"];

/// Whether the sensor named `sensor` is a CPU or SoC sensor.
pub fn is_cpu_sensor(sensor: &str) -> bool {
    let kind = sensor.split('/').nth(1).unwrap_or(sensor).to_ascii_lowercase();
    CPU_SENSORS.iter().any(|needle| kind.contains(needle))
}

/// The hottest CPU or SoC reading, millidegrees Celsius.
pub fn hottest_cpu(temperatures: &[Temperature]) -> Option<i64> {
    temperatures.iter().filter(|t| is_cpu_sensor(&t.sensor)).map(|t| t.millidegrees_celsius).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sensors_by_name() {
        let cases = [
            ("thermal_zone0/cpu-thermal", true),
            ("thermal_zone1/x86_pkg_temp", true),
            ("hwmon1/coretemp/temp2", true),
            ("hwmon2/k10temp/temp1", true),
            ("thermal_zone0/soc_thermal", true),
            ("hwmon3/nvme/temp1", false),
            ("hwmon4/iwlwifi_1/temp1", false),
            ("hwmon2/rp1_adc/temp1", false),
            ("thermal_zone2/acpitz", false),
            ("hwmon5/amdgpu/temp1", false),
        ];
        for (sensor, cpu) in cases {
            assert_eq!(is_cpu_sensor(sensor), cpu, "{sensor}");
        }
    }

    #[test]
    fn the_hottest_cpu_reading_ignores_a_hot_drive() {
        let t = |sensor: &str, m: i64| Temperature { sensor: sensor.into(), millidegrees_celsius: m };
        let readings = [
            t("thermal_zone0/cpu-thermal", 61_000),
            t("hwmon1/coretemp/temp2", 82_500),
            t("hwmon3/nvme/temp1", 84_000),
        ];
        assert_eq!(hottest_cpu(&readings), Some(82_500));
        assert_eq!(hottest_cpu(&readings[2..]), None);
    }
}
