//! Bounds on what one message makes the collector keep. Strings are cut to their cap and
//! repeated fields of a sample to `--max-sample-entries`, each cut counted: nothing an honest
//! agent sends comes near the caps, and a cut never stalls an agent (a refused batch is sent
//! again and again). What cannot be cut without changing its meaning is refused: a batch with
//! more samples than `--max-sample-entries`, and a sample or a batch with more pods than
//! `--max-pods-per-node` (its pod references would dangle).
//!
//! Caps: pod UIDs [`MAX_POD_UID_BYTES`] (Kubernetes UIDs are 36), QoS classes
//! [`MAX_QOS_CLASS_BYTES`], every other name or path (interfaces, sensors, cgroup paths,
//! pressure and unavailable entries, the Hello's boot id, version and stream id)
//! `--max-string-bytes`; a Hello's capabilities [`MAX_CAPABILITIES`]. Node names are checked,
//! not cut, by the Hello (a cut name would be another node).

use bakery_proto::v1::{Batch, Hello, Sample};
use tonic::Status;

use super::refusals::IngestRefusal;
use crate::limits::IngestLimits;

/// Bytes kept of a pod UID: a Kubernetes UID is 36.
pub const MAX_POD_UID_BYTES: usize = 64;
/// Bytes kept of a QoS class ("guaranteed", "burstable", "besteffort").
pub const MAX_QOS_CLASS_BYTES: usize = 16;
/// Capabilities kept of a Hello.
pub const MAX_CAPABILITIES: usize = 64;

/// What was cut from one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Strings shortened.
    pub strings: u64,
    /// Repeated entries dropped.
    pub entries: u64,
}

impl Cut {
    fn string(&mut self, text: &mut String, max_bytes: usize) {
        if text.len() > max_bytes {
            let mut end = max_bytes;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            self.strings = self.strings.saturating_add(1);
        }
    }

    fn list<T>(&mut self, list: &mut Vec<T>, max_entries: usize) {
        if list.len() > max_entries {
            self.entries = self.entries.saturating_add((list.len() - max_entries) as u64);
            list.truncate(max_entries);
        }
    }
}

/// A message refused for its content, with the cause it is counted under.
#[derive(Debug)]
pub struct Refused {
    pub cause: IngestRefusal,
    pub status: Status,
}

/// Cuts a Hello's free-form strings (its node name is checked elsewhere).
pub fn bound_hello(hello: &mut Hello, limits: &IngestLimits) -> Cut {
    let mut cut = Cut::default();
    let max = limits.max_string_bytes;
    cut.string(&mut hello.boot_id, max);
    cut.string(&mut hello.agent_version, max);
    cut.string(&mut hello.stream_id, max);
    cut.list(&mut hello.capabilities, MAX_CAPABILITIES);
    for capability in &mut hello.capabilities {
        cut.string(capability, max);
    }
    cut
}

/// Refuses a batch the caps cannot represent, else cuts what is over its cap.
pub fn bound_batch(batch: &mut Batch, limits: &IngestLimits) -> Result<Cut, Refused> {
    if batch.samples.len() > limits.max_sample_entries {
        return Err(Refused {
            cause: IngestRefusal::SampleCap,
            status: Status::resource_exhausted(format!(
                "batch {} holds {} samples; the collector takes at most {} per batch (--max-sample-entries)",
                batch.seq,
                batch.samples.len(),
                limits.max_sample_entries
            )),
        });
    }
    let pods_over = |what: &str, count: usize| Refused {
        cause: IngestRefusal::PodCap,
        status: Status::resource_exhausted(format!(
            "batch {}: {what} {count} pods; the collector keeps at most {} per node (--max-pods-per-node)",
            batch.seq, limits.max_pods_per_node
        )),
    };
    if batch.new_pods.len() > limits.max_pods_per_node {
        return Err(pods_over("declares", batch.new_pods.len()));
    }
    if let Some(sample) = batch.samples.iter().find(|s| s.pods.len() > limits.max_pods_per_node) {
        return Err(pods_over("a sample holds", sample.pods.len()));
    }
    let mut cut = Cut::default();
    for pod in &mut batch.new_pods {
        cut.string(&mut pod.uid, MAX_POD_UID_BYTES);
        cut.string(&mut pod.qos_class, MAX_QOS_CLASS_BYTES);
        cut.string(&mut pod.cgroup_path, limits.max_string_bytes);
    }
    for sample in &mut batch.samples {
        bound_sample(sample, limits, &mut cut);
    }
    Ok(cut)
}

fn bound_sample(sample: &mut Sample, limits: &IngestLimits, cut: &mut Cut) {
    let (max_entries, max_bytes) = (limits.max_sample_entries, limits.max_string_bytes);
    cut.list(&mut sample.cpu_cores, max_entries);
    cut.list(&mut sample.cpu_frequencies, max_entries);
    cut.list(&mut sample.pressure, max_entries);
    for pressure in &mut sample.pressure {
        cut.string(&mut pressure.resource, max_bytes);
        cut.string(&mut pressure.kind, max_bytes);
    }
    cut.list(&mut sample.temperatures, max_entries);
    for temperature in &mut sample.temperatures {
        cut.string(&mut temperature.sensor, max_bytes);
    }
    cut.list(&mut sample.fans, max_entries);
    for fan in &mut sample.fans {
        cut.string(&mut fan.sensor, max_bytes);
    }
    cut.list(&mut sample.voltage_alarms, max_entries);
    for alarm in &mut sample.voltage_alarms {
        cut.string(&mut alarm.sensor, max_bytes);
    }
    cut.list(&mut sample.interfaces, max_entries);
    for interface in &mut sample.interfaces {
        cut.string(&mut interface.name, max_bytes);
        cut.string(&mut interface.master, max_bytes);
    }
    cut.list(&mut sample.unavailable, max_entries);
    for unavailable in &mut sample.unavailable {
        cut.string(&mut unavailable.signal, max_bytes);
        cut.string(&mut unavailable.reason, max_bytes);
    }
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::{NetInterface, PodIdentity, PodSample, Temperature, Unavailable};

    use super::*;

    fn limits() -> IngestLimits {
        IngestLimits { max_sample_entries: 4, max_pods_per_node: 3, max_string_bytes: 8, ..IngestLimits::default() }
    }

    #[test]
    fn strings_and_lists_over_their_caps_are_cut_and_counted() {
        let mut sample = Sample {
            interfaces: (0..6)
                .map(|i| NetInterface { name: format!("eth{i}-with-a-long-name"), ..NetInterface::default() })
                .collect(),
            temperatures: vec![Temperature { sensor: "é".repeat(10), millidegrees_celsius: 1 }],
            unavailable: vec![Unavailable { signal: "pods".into(), reason: "x".repeat(10_000) }],
            ..Sample::default()
        };
        sample.pods = vec![PodSample { pod_ref: 1, ..PodSample::default() }];
        let uid = "u".repeat(1_000_000);
        let pod = PodIdentity {
            pod_ref: 1,
            uid,
            qos_class: "burstable".into(),
            cgroup_path: "/".repeat(300),
            host_network: false,
        };
        let mut batch = Batch { seq: 1, new_pods: vec![pod], samples: vec![sample] };
        let cut = bound_batch(&mut batch, &limits()).unwrap();
        let sample = &batch.samples[0];
        assert_eq!(sample.interfaces.len(), 4, "the first 4 interfaces are kept");
        assert_eq!(sample.interfaces[0].name, "eth0-wit");
        assert_eq!(sample.temperatures[0].sensor, "éééé", "cut at a character boundary");
        assert_eq!(sample.unavailable[0].reason.len(), 8);
        let pod = &batch.new_pods[0];
        assert_eq!((pod.uid.len(), pod.qos_class.as_str(), pod.cgroup_path.len()), (MAX_POD_UID_BYTES, "burstable", 8));
        // 4 interface names, the sensor, the reason, the uid and the cgroup path; 2 interfaces
        assert_eq!(cut, Cut { strings: 8, entries: 2 });
        // within the caps nothing changes
        let before = batch.clone();
        assert_eq!(bound_batch(&mut batch, &limits()).unwrap(), Cut::default());
        assert_eq!(batch, before);
    }

    #[test]
    fn too_many_samples_or_pods_are_refused_not_cut() {
        let pods = |n: u32| (1..=n).map(|r| PodSample { pod_ref: r, ..PodSample::default() }).collect::<Vec<_>>();
        let mut many_samples = Batch { seq: 7, samples: vec![Sample::default(); 5], ..Batch::default() };
        let refused = bound_batch(&mut many_samples, &limits()).unwrap_err();
        assert_eq!((refused.cause, refused.status.code()), (IngestRefusal::SampleCap, tonic::Code::ResourceExhausted));
        assert!(refused.status.message().contains("--max-sample-entries"), "{:?}", refused.status);
        let mut many_pods =
            Batch { seq: 7, samples: vec![Sample { pods: pods(4), ..Sample::default() }], ..Batch::default() };
        let refused = bound_batch(&mut many_pods, &limits()).unwrap_err();
        assert_eq!(refused.cause, IngestRefusal::PodCap);
        assert!(refused.status.message().contains("--max-pods-per-node"), "{:?}", refused.status);
        let declared = vec![PodIdentity::default(); 4];
        let mut many_declared = Batch { seq: 7, new_pods: declared, samples: vec![] };
        assert_eq!(bound_batch(&mut many_declared, &limits()).unwrap_err().cause, IngestRefusal::PodCap);
        let mut enough =
            Batch { seq: 7, samples: vec![Sample { pods: pods(3), ..Sample::default() }; 4], ..Batch::default() };
        assert!(bound_batch(&mut enough, &limits()).is_ok());
    }

    #[test]
    fn a_hellos_strings_are_cut_and_its_node_name_left_alone() {
        let mut hello = Hello {
            node_name: "n".repeat(200),
            boot_id: "b".repeat(100),
            capabilities: vec!["cpu".into(); 100],
            ..Hello::default()
        };
        let cut = bound_hello(&mut hello, &limits());
        assert_eq!((hello.node_name.len(), hello.boot_id.len(), hello.capabilities.len()), (200, 8, MAX_CAPABILITIES));
        assert_eq!(cut, Cut { strings: 1, entries: 36 });
    }
}
