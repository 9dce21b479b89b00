//! A node's sysfs overlay: what a hot, throttled Raspberry Pi 5 shows, for that node's agent only
//! (`--sys-root <overlay>`), while everything else (the cgroup filesystem above all) is the real
//! `/sys`.
//!
//! The overlay is a symlink farm: each directory on the way to a fake file is a real directory in
//! the overlay, every other entry of it a symlink to the same entry under the real root, and the
//! fake files are plain files. Paths and formats, as a Raspberry Pi 5 running Linux shows them:
//! `class/thermal/thermal_zone0/{type,temp}` (millidegrees Celsius, zone type `cpu-thermal`),
//! `devices/system/cpu/cpu<N>/cpufreq/{scaling_cur_freq,cpuinfo_max_freq}` (kHz) and
//! `devices/platform/soc/soc:firmware/get_throttled` (hex, as the Pi firmware driver prints it).
//!
//! A board that turns hot mid-run starts with [`cool`]'s files, which [`rewrite`] then replaces
//! with the hot ones in place: the agent keeps its sysfs files open between samples, so a file
//! renamed over them would never be read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::scenario::{ThermalOverlay, parse_hex};
use crate::{Error, Result};

/// The fake files for `thermal` on a machine with `cores` CPUs, by path relative to the sys root.
pub fn thermal_files(thermal: &ThermalOverlay, cores: usize) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("class/thermal/thermal_zone0/type"), "cpu-thermal\n".to_string());
    files.insert(
        PathBuf::from("class/thermal/thermal_zone0/temp"),
        format!("{}\n", (thermal.temperature_celsius * 1000.0).round() as i64),
    );
    for cpu in 0..cores.max(1) {
        let dir = PathBuf::from(format!("devices/system/cpu/cpu{cpu}/cpufreq"));
        files.insert(dir.join("scaling_cur_freq"), format!("{}\n", thermal.current_mhz * 1000));
        files.insert(dir.join("cpuinfo_max_freq"), format!("{}\n", thermal.max_mhz * 1000));
        files.insert(dir.join("scaling_max_freq"), format!("{}\n", thermal.max_mhz * 1000));
    }
    if let Some(word) = parse_hex(&thermal.throttled) {
        files.insert(PathBuf::from("devices/platform/soc/soc:firmware/get_throttled"), format!("{word:x}\n"));
    }
    files
}

/// The cores an overlay lists frequencies for: the machine's.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What `hot`'s board shows before it turns hot: a Pi 5 at ease (50 C, at its maximum frequency,
/// no throttle bit), with the same files as `hot` so that turning hot rewrites them all.
pub fn cool(hot: &ThermalOverlay) -> ThermalOverlay {
    ThermalOverlay {
        temperature_celsius: 50.0,
        current_mhz: hot.max_mhz,
        max_mhz: hot.max_mhz,
        throttled: if hot.throttled.is_empty() { String::new() } else { "0x0".into() },
        start_s: None,
    }
}

/// Writes `files` over the same files of the overlay at `overlay`, each in place (the same inode,
/// truncated to its new length after the write), so that a reader holding it open sees the change.
pub fn rewrite(overlay: &Path, files: &BTreeMap<PathBuf, String>) -> Result<()> {
    use std::io::Write;
    for (relative, content) in files {
        let path = overlay.join(relative);
        let io = |source| Error::File { action: "rewriting", path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
        file.write_all(content.as_bytes()).map_err(io)?;
        file.set_len(content.len() as u64).map_err(io)?;
    }
    Ok(())
}

/// Builds the overlay of `real` at `overlay` with `files` replaced.
pub fn build(real: &Path, overlay: &Path, files: &BTreeMap<PathBuf, String>) -> Result<()> {
    let io = |action: &'static str, path: &Path, source| Error::File { action, path: path.to_path_buf(), source };
    // Every directory on the way to a fake file is made real; the root too.
    let mut real_dirs: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
    for path in files.keys() {
        let mut dir = path.parent();
        while let Some(d) = dir {
            real_dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    for dir in &real_dirs {
        let target = overlay.join(dir);
        std::fs::create_dir_all(&target).map_err(|e| io("creating", &target, e))?;
        let Ok(entries) = std::fs::read_dir(real.join(dir)) else { continue };
        for entry in entries.flatten() {
            let relative = dir.join(entry.file_name());
            if real_dirs.contains(&relative) || files.contains_key(&relative) {
                continue;
            }
            let link = overlay.join(&relative);
            std::os::unix::fs::symlink(entry.path(), &link).map_err(|e| io("linking", &link, e))?;
        }
    }
    for (relative, content) in files {
        let path = overlay.join(relative);
        std::fs::write(&path, content).map_err(|e| io("writing", &path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot() -> ThermalOverlay {
        ThermalOverlay {
            temperature_celsius: 83.5,
            current_mhz: 1500,
            max_mhz: 2400,
            throttled: "0x50005".into(),
            start_s: None,
        }
    }

    #[test]
    fn a_board_turning_hot_rewrites_the_files_its_agent_holds_open() {
        let real = tempfile::tempdir().unwrap();
        let overlay = tempfile::tempdir().unwrap();
        let cool = cool(&hot());
        build(real.path(), overlay.path(), &thermal_files(&cool, 2)).unwrap();
        let temp = overlay.path().join("class/thermal/thermal_zone0/temp");
        let throttled = overlay.path().join("devices/platform/soc/soc:firmware/get_throttled");
        assert_eq!(std::fs::read_to_string(&temp).unwrap(), "50000\n");
        assert_eq!(std::fs::read_to_string(&throttled).unwrap(), "0\n", "no throttle bit");
        assert_eq!(
            thermal_files(&cool, 2).keys().collect::<Vec<_>>(),
            thermal_files(&hot(), 2).keys().collect::<Vec<_>>(),
            "the same files, cool and hot"
        );
        // As the agent reads it: one descriptor kept open, read again from the start.
        let mut held = std::fs::File::open(&throttled).unwrap();
        rewrite(overlay.path(), &thermal_files(&hot(), 2)).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut held, &mut text).unwrap();
        assert_eq!(text, "50005\n", "the open file shows the hot word");
        assert_eq!(std::fs::read_to_string(&temp).unwrap(), "83500\n");
        let frequency = overlay.path().join("devices/system/cpu/cpu1/cpufreq/scaling_cur_freq");
        assert_eq!(std::fs::read_to_string(frequency).unwrap(), "1500000\n");
        let cool_again = thermal_files(&ThermalOverlay { throttled: "0x0".into(), ..hot() }, 2);
        rewrite(overlay.path(), &cool_again).unwrap();
        assert_eq!(std::fs::read_to_string(&throttled).unwrap(), "0\n", "a shorter word leaves no tail");
    }

    #[test]
    fn a_hot_pi_in_the_agents_formats() {
        let files = thermal_files(&hot(), 2);
        assert_eq!(files[Path::new("class/thermal/thermal_zone0/temp")], "83500\n");
        assert_eq!(files[Path::new("class/thermal/thermal_zone0/type")], "cpu-thermal\n");
        assert_eq!(files[Path::new("devices/system/cpu/cpu1/cpufreq/scaling_cur_freq")], "1500000\n");
        assert_eq!(files[Path::new("devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq")], "2400000\n");
        assert_eq!(files[Path::new("devices/platform/soc/soc:firmware/get_throttled")], "50005\n");
        let cool = ThermalOverlay { throttled: String::new(), ..hot() };
        assert!(!thermal_files(&cool, 1).keys().any(|p| p.ends_with("get_throttled")));
    }

    #[test]
    fn the_overlay_keeps_the_real_tree_and_replaces_only_the_fakes() {
        let real = tempfile::tempdir().unwrap();
        let overlay = tempfile::tempdir().unwrap();
        for dir in ["fs/cgroup/cpuacct", "class/net/eth0", "class/thermal", "devices/system/cpu/cpu0/cpuidle"] {
            std::fs::create_dir_all(real.path().join(dir)).unwrap();
        }
        std::fs::write(real.path().join("devices/system/cpu/online"), "0-1\n").unwrap();
        build(real.path(), overlay.path(), &thermal_files(&hot(), 1)).unwrap();
        let o = overlay.path();
        assert!(o.join("fs").symlink_metadata().unwrap().file_type().is_symlink(), "untouched subtrees are links");
        assert!(o.join("fs/cgroup/cpuacct").is_dir(), "and reach the real tree");
        assert!(o.join("class/net").symlink_metadata().unwrap().file_type().is_symlink());
        assert!(!o.join("class/thermal").symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(o.join("devices/system/cpu/online")).unwrap(), "0-1\n");
        assert!(o.join("devices/system/cpu/cpu0/cpuidle").is_dir());
        assert_eq!(std::fs::read_to_string(o.join("class/thermal/thermal_zone0/temp")).unwrap(), "83500\n");
        assert_eq!(std::fs::read_to_string(real.path().join("devices/system/cpu/online")).unwrap(), "0-1\n");
        assert!(!real.path().join("class/thermal/thermal_zone0").exists(), "the real tree is not written");
    }
}
