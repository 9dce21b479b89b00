//! Cgroup paths: which pod cgroup a process is in, and a cgroup's directory below the cgroup root.
//!
//! Which pod: from the text of a process's `/proc/<pid>/cgroup`.
//!
//! The format is one `hierarchy-id:controllers:path` line per hierarchy
//! (cgroup v2 has the single line `0::/path`), see `cgroups(7)`, section
//! "/proc/\[pid\]/cgroup". The kubelet names pod cgroups after the pod UID
//! (kubelet `pkg/kubelet/cm/pod_container_manager_linux.go`,
//! `GetPodContainerName`) in one of two layouts:
//!
//! - cgroupfs driver: `/kubepods/<qos>/pod<UID>/<container-id>`, with no
//!   `<qos>` level for Guaranteed pods;
//! - systemd driver: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<UID>.slice/cri-containerd-<id>.scope`,
//!   with `-` in the UID written as `_` (systemd uses `-` for nesting) and
//!   `kubepods-pod<UID>.slice` for Guaranteed pods.
//!
//! The kubepods level may sit below another prefix (K3s in a container,
//! kind's `kubelet.slice/kubelet-kubepods.slice`), so it is matched anywhere
//! in the path.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::CgroupVersion;
use crate::signal::ParseError;

/// Kubernetes QoS class, from the kubepods cgroup level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The pod a process is in, as named by its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodCgroup {
    /// The pod UID with dashes, as the API server spells it.
    pub uid: String,
    pub qos_class: QosClass,
    /// The pod-level cgroup (the container level cut off), relative to the
    /// v2 root or to a v1 controller's mount, e.g. `/kubepods/besteffort/pod<uid>`.
    pub pod_path: String,
    pub version: CgroupVersion,
}

/// Finds the pod named by the content of a `/proc/<pid>/cgroup` file.
///
/// A v1 controller line wins over the v2 line: on a hybrid layout the
/// controllers (and so the pod's CPU and memory accounting) are on v1.
/// `Ok(None)` means the process is not in a pod (or the file was empty
/// because the process just exited); `Err` means a line is not
/// `hierarchy-id:controllers:path`.
pub fn parse_pod_cgroup(content: &str) -> Result<Option<PodCgroup>, ParseError> {
    let mut from_v2 = None;
    for line in content.lines() {
        if line.is_empty() {
            continue;
        }
        let (hierarchy_id, path) = split_line(line)?;
        if hierarchy_id == 0 {
            if from_v2.is_none() {
                from_v2 = pod_in_path(path, CgroupVersion::V2);
            }
        } else if let Some(pod) = pod_in_path(path, CgroupVersion::V1) {
            return Ok(Some(pod));
        }
    }
    Ok(from_v2)
}

/// Splits `id:controllers:path` into the hierarchy id and the path.
fn split_line(line: &str) -> Result<(u32, &str), ParseError> {
    let mut fields = line.splitn(3, ':');
    let (Some(id), Some(_controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(ParseError::new(format!("expected `hierarchy-id:controllers:path`, found {line:?}")));
    };
    let id = id.parse().map_err(|_| ParseError::new(format!("hierarchy id is not a number in {line:?}")))?;
    Ok((id, path))
}

/// Finds a kubepods pod level anywhere in a cgroup path.
pub fn pod_in_path(path: &str, version: CgroupVersion) -> Option<PodCgroup> {
    let mut previous = "";
    let mut before_previous = "";
    let mut end = 0;
    for segment in path.split('/') {
        end += segment.len();
        let found = if let Some(slice) = segment.strip_suffix(".slice") {
            systemd_pod(slice)
        } else {
            cgroupfs_pod(segment, previous, before_previous)
        };
        if let Some((uid, qos_class)) = found {
            return Some(PodCgroup { uid, qos_class, pod_path: path[..end].to_string(), version });
        }
        before_previous = previous;
        previous = segment;
        end += 1; // the '/' that follows
    }
    None
}

/// `pod<UID>` right below `kubepods` (Guaranteed) or below `kubepods/<qos>`.
fn cgroupfs_pod(segment: &str, parent: &str, grandparent: &str) -> Option<(String, QosClass)> {
    let uid = segment.strip_prefix("pod")?;
    let qos_class = match (grandparent, parent) {
        (_, "kubepods") => QosClass::Guaranteed,
        ("kubepods", "burstable") => QosClass::Burstable,
        ("kubepods", "besteffort") => QosClass::BestEffort,
        _ => return None,
    };
    Some((pod_uid(uid, '-')?, qos_class))
}

/// `[<prefix>-]kubepods[-<qos>]-pod<UID_>` (the `.slice` already cut off).
/// systemd slice names repeat their parents' names, so the kubepods part is
/// the last `kubepods-` in the name (kind's is `kubelet-kubepods-...`).
fn systemd_pod(slice: &str) -> Option<(String, QosClass)> {
    let start = slice.rfind("kubepods-")?;
    if start > 0 && !slice[..start].ends_with('-') {
        return None;
    }
    let rest = &slice[start + "kubepods-".len()..];
    let (qos_class, uid) = if let Some(uid) = rest.strip_prefix("burstable-pod") {
        (QosClass::Burstable, uid)
    } else if let Some(uid) = rest.strip_prefix("besteffort-pod") {
        (QosClass::BestEffort, uid)
    } else {
        (QosClass::Guaranteed, rest.strip_prefix("pod")?)
    };
    Some((pod_uid(uid, '_')?, qos_class))
}

/// The UID with dashes, if `raw` looks like one: hex digits and `separator`.
/// API-server UIDs are UUIDs; static pods use a 32-digit hash with no
/// separator, so the length is not fixed.
fn pod_uid(raw: &str, separator: char) -> Option<String> {
    let plausible = !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().any(|c| c.is_ascii_hexdigit())
        && raw.chars().all(|c| c.is_ascii_hexdigit() || c == separator);
    plausible.then(|| raw.replace(separator, "-"))
}

/// A cgroup path as `/proc/<pid>/cgroup` and `--node-cgroup` write it (with a leading `/`),
/// relative to the cgroup root: without the leading `/`, so that joining it to a directory stays
/// below that directory (empty: the root cgroup itself).
pub fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// `root` with the non-empty `parts` appended: joining an empty part would
/// leave a trailing `/` in paths that people read.
pub fn below(root: &Path, parts: &[&str]) -> PathBuf {
    let mut dir = root.to_path_buf();
    for part in parts.iter().filter(|part| !part.is_empty()) {
        dir.push(part);
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UID: &str = "7c2f1c3e-5b0a-4f7e-9d61-0e8a2b4c6d10";
    const UID_: &str = "7c2f1c3e_5b0a_4f7e_9d61_0e8a2b4c6d10";
    const CID: &str = "3f1e5a7c9b2d4f6e8a0c1e3f5a7b9d1c3e5f7a9b1d3f5e7a9c1b3d5f7e9a1c3e";

    fn pod(qos_class: QosClass, pod_path: &str, version: CgroupVersion) -> Option<PodCgroup> {
        Some(PodCgroup { uid: UID.to_string(), qos_class, pod_path: pod_path.to_string(), version })
    }

    // One piece: a single table of every layout (driver, version, QoS class, prefix), read top to
    // bottom against the kubelet's naming; split up, the cases would no longer show side by side.
    #[test]
    fn every_layout_and_qos_class_names_its_pod() {
        use CgroupVersion::{V1, V2};
        use QosClass::{BestEffort, Burstable, Guaranteed};
        let cases: Vec<(String, Option<PodCgroup>)> = vec![
            // cgroup v2, systemd driver.
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
                ),
                pod(
                    Burstable,
                    &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
                    V2,
                ),
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
                ),
                pod(
                    BestEffort,
                    &format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"),
                    V2,
                ),
            ),
            (
                format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n"),
                pod(Guaranteed, &format!("/kubepods.slice/kubepods-pod{UID_}.slice"), V2),
            ),
            // cgroup v2, cgroupfs driver.
            (
                format!("0::/kubepods/burstable/pod{UID}/{CID}\n"),
                pod(Burstable, &format!("/kubepods/burstable/pod{UID}"), V2),
            ),
            (
                format!("0::/kubepods/besteffort/pod{UID}/{CID}\n"),
                pod(BestEffort, &format!("/kubepods/besteffort/pod{UID}"), V2),
            ),
            (format!("0::/kubepods/pod{UID}/{CID}\n"), pod(Guaranteed, &format!("/kubepods/pod{UID}"), V2)),
            // cgroup v1, cgroupfs driver: several controller lines agree.
            (
                format!(
                    "12:memory:/kubepods/burstable/pod{UID}/{CID}\n4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n0::/\n"
                ),
                pod(Burstable, &format!("/kubepods/burstable/pod{UID}"), V1),
            ),
            (
                format!("4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n"),
                pod(BestEffort, &format!("/kubepods/besteffort/pod{UID}"), V1),
            ),
            (format!("7:memory:/kubepods/pod{UID}/{CID}\n"), pod(Guaranteed, &format!("/kubepods/pod{UID}"), V1)),
            // cgroup v1, systemd driver.
            (
                format!(
                    "11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
                ),
                pod(
                    Burstable,
                    &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
                    V1,
                ),
            ),
            (
                format!(
                    "3:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{CID}.scope\n"
                ),
                pod(
                    BestEffort,
                    &format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"),
                    V1,
                ),
            ),
            (
                format!("5:memory:/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope\n"),
                pod(Guaranteed, &format!("/kubepods.slice/kubepods-pod{UID_}.slice"), V1),
            ),
            // Hybrid: the v1 controller line wins over the unified line.
            (
                format!("4:memory:/kubepods/besteffort/pod{UID}/{CID}\n0::/system.slice/containerd.service\n"),
                pod(BestEffort, &format!("/kubepods/besteffort/pod{UID}"), V1),
            ),
            (
                format!("0::/kubepods/besteffort/pod{UID}/{CID}\n4:memory:/kubepods/besteffort/pod{UID}/{CID}\n"),
                pod(BestEffort, &format!("/kubepods/besteffort/pod{UID}"), V1),
            ),
            // Nested under another prefix: K3s in a container, kind.
            (
                format!("0::/docker/{CID}/kubepods/burstable/pod{UID}/{CID}\n"),
                pod(Burstable, &format!("/docker/{CID}/kubepods/burstable/pod{UID}"), V2),
            ),
            (
                format!(
                    "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
                ),
                pod(
                    BestEffort,
                    &format!(
                        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice"
                    ),
                    V2,
                ),
            ),
            // A process directly in the pod cgroup (no container level).
            (
                format!("0::/kubepods/besteffort/pod{UID}\n"),
                pod(BestEffort, &format!("/kubepods/besteffort/pod{UID}"), V2),
            ),
            // Static pods: the UID is a 32-digit hash without dashes.
            (
                "0::/kubepods/burstable/pod0123456789abcdef0123456789abcdef/c1\n".to_string(),
                Some(PodCgroup {
                    uid: "0123456789abcdef0123456789abcdef".to_string(),
                    qos_class: Burstable,
                    pod_path: "/kubepods/burstable/pod0123456789abcdef0123456789abcdef".to_string(),
                    version: V2,
                }),
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(parse_pod_cgroup(&content), Ok(expected), "{content}");
        }
    }

    #[test]
    fn processes_outside_pods_are_not_pods() {
        for content in [
            "0::/system.slice/k3s.service\n",
            "0::/\n",
            "0::/kubepods.slice\n",
            "0::/kubepods.slice/kubepods-burstable.slice\n",
            "0::/kubepods/burstable\n",
            "0::/kubepods/besteffort\n",
            "12:memory:/user.slice/user-1000.slice/session-3.scope\n0::/user.slice\n",
            // `pod` not under kubepods, or not followed by a UID.
            "0::/system.slice/podman-1234.scope\n",
            "0::/kubepods/burstable/podinfo\n",
            "0::/kubepods/unknownqos/pod7c2f1c3e-5b0a-4f7e-9d61-0e8a2b4c6d10/c1\n",
            "0::/mykubepods-pod7c2f1c3e_5b0a.slice\n",
            // A dash-form UID is not a systemd slice UID.
            "0::/kubepods.slice/kubepods-pod7c2f1c3e-5b0a.slice\n",
            "",
        ] {
            assert_eq!(parse_pod_cgroup(content), Ok(None), "{content:?}");
        }
    }

    #[test]
    fn lines_that_are_not_cgroup_lines_are_malformed() {
        for content in ["garbage\n", "0:/kubepods\n", "x::/kubepods/pod7c2f1c3e\n", "0::/\nnot a line\n"] {
            assert!(parse_pod_cgroup(content).is_err(), "{content:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_pod_cgroup(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn any_uuid_round_trips_through_both_drivers(uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            let systemd = format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope",
                uid.replace('-', "_")
            );
            let cgroupfs = format!("3:memory:/kubepods/burstable/pod{uid}/{CID}");
            prop_assert_eq!(parse_pod_cgroup(&systemd).ok().flatten().map(|p| p.uid), Some(uid.clone()));
            prop_assert_eq!(parse_pod_cgroup(&cgroupfs).ok().flatten().map(|p| p.uid), Some(uid));
        }
    }
}
