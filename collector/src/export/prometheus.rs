//! The Prometheus text format (exposition format 0.0.4) of the export's points, with names and
//! labels translated as Prometheus and Mimir translate OTLP (`k8s.pod.network.io` in `By` ->
//! `k8s_pod_network_io_bytes_total`), so dashboards work for scrapers and OTLP users alike.
//! Translation rules: prometheus/otlptranslator (unit suffixes, `_total` for monotonic sums,
//! `_ratio` for gauges in `1`, `{annotation}` units dropped).

use std::fmt::Write;

use super::model::{Kind, MetricSpec, ResourcePoints};

/// Resource attributes that become labels on every series of the resource (the ones that tell
/// nodes and pods apart; Prometheus calls this promoting resource attributes). A pod's series keep
/// its identity as labels here although OTLP carries it on the pod's own resource.
pub const PROMOTED_RESOURCE_ATTRIBUTES: &[&str] = &[
    "k8s.node.name",
    "k8s.cluster.name",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.namespace.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.replicaset.name",
    "k8s.job.name",
    "k8s.cronjob.name",
    "bakery.workload.kind",
    "bakery.workload.name",
];

/// A name or label with every character outside `[a-zA-Z0-9_:]` turned into `_`.
pub fn sanitize(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The unit's suffix, `None` for units that add nothing (annotations like `{packet}`).
fn unit_suffix(unit: &str, kind: Kind) -> Option<&'static str> {
    match unit {
        "By" => Some("bytes"),
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "Cel" => Some("celsius"),
        "Hz" => Some("hertz"),
        "1" if kind == Kind::Gauge => Some("ratio"),
        _ => None,
    }
}

/// The Prometheus name of a metric.
pub fn prometheus_name(metric: &MetricSpec) -> String {
    let mut name = sanitize(metric.name);
    if let Some(suffix) = unit_suffix(metric.unit, metric.kind)
        && !name.ends_with(&format!("_{suffix}"))
    {
        name.push('_');
        name.push_str(suffix);
    }
    if metric.kind == Kind::Counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

/// Renders every resource's points, grouped by metric in catalogue order.
pub fn render(resources: &[ResourcePoints]) -> String {
    let mut out = String::new();
    for metric in super::model::ALL {
        let mut header_written = false;
        let name = prometheus_name(metric);
        for resource in resources {
            let promoted: Vec<_> = resource
                .resource
                .iter()
                .filter(|(key, _)| PROMOTED_RESOURCE_ATTRIBUTES.contains(key))
                .map(|(key, value)| (*key, value.to_string()))
                .collect();
            for point in resource.points.iter().filter(|p| std::ptr::eq(p.metric, *metric) || p.metric == *metric) {
                if !header_written {
                    let kind = if metric.kind == Kind::Counter { "counter" } else { "gauge" };
                    let _ = writeln!(out, "# HELP {name} {} ({})", metric.description, metric.unit);
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    header_written = true;
                }
                out.push_str(&name);
                let labels = promoted
                    .iter()
                    .map(|(key, value)| (*key, value.clone()))
                    .chain(point.attributes.iter().map(|(key, value)| (*key, value.to_string())));
                let mut first = true;
                for (key, value) in labels {
                    out.push(if first { '{' } else { ',' });
                    first = false;
                    out.push_str(&sanitize(key));
                    out.push_str("=\"");
                    escape_label_value(&value, &mut out);
                    out.push('"');
                }
                if !first {
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&format_value(point.value));
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::model::*;

    #[test]
    fn names_translate_as_prometheus_translates_otlp() {
        let cases = [
            (&K8S_POD_NETWORK_IO, "k8s_pod_network_io_bytes_total"),
            (&SYSTEM_CPU_TIME, "system_cpu_time_seconds_total"),
            (&SYSTEM_CPU_UTILIZATION, "system_cpu_utilization_ratio"),
            (&SYSTEM_MEMORY_USAGE, "system_memory_usage_bytes"),
            (&HW_TEMPERATURE, "hw_temperature_celsius"),
            (&SYSTEM_CPU_FREQUENCY, "system_cpu_frequency_hertz"),
            (&SYSTEM_NETWORK_PACKET_COUNT, "system_network_packet_count_total"),
            (&BAKERY_CONNTRACK_ENTRIES, "bakery_conntrack_entries"),
            (&BAKERY_EXPORT_DROPPED, "bakery_export_dropped_total"),
            (&BAKERY_COLLECTOR_AUTH_REFUSALS, "bakery_collector_auth_refusals_total"),
            (&K8S_POD_MEMORY_WORKING_SET, "k8s_pod_memory_working_set_bytes"),
            (&SYSTEM_MEMORY_LINUX_AVAILABLE, "system_memory_linux_available_bytes"),
            (&HW_CPU_SPEED_LIMIT, "hw_cpu_speed_limit_hertz"),
            (&BAKERY_POD_TCP_CONNECTIONS, "bakery_pod_tcp_connections"),
        ];
        for (metric, expected) in cases {
            assert_eq!(prometheus_name(metric), expected, "{}", metric.name);
        }
    }

    #[test]
    fn every_translated_name_is_unique() {
        let mut names: Vec<String> = ALL.iter().map(|m| prometheus_name(m)).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn renders_promoted_resource_labels_and_escapes_values() {
        let resources = vec![
            ResourcePoints {
                instance: "n1".into(),
                resource: vec![
                    ("k8s.node.name", AttrValue::Str("n1".into())),
                    ("host.name", AttrValue::Str("n1".into())),
                    ("k8s.cluster.name", AttrValue::Str("bakery".into())),
                ],
                points: vec![Point { metric: &SYSTEM_MEMORY_LIMIT, attributes: vec![], value: 8.0 }],
            },
            ResourcePoints {
                instance: "u\"1".into(),
                resource: vec![
                    ("k8s.pod.uid", AttrValue::Str("u\"1".into())),
                    ("k8s.node.name", AttrValue::Str("n1".into())),
                    ("k8s.cluster.name", AttrValue::Str("bakery".into())),
                    ("service.instance.id", AttrValue::Str("u\"1".into())),
                ],
                points: vec![Point {
                    metric: &K8S_POD_NETWORK_IO,
                    attributes: vec![("network.io.direction", AttrValue::Str("receive".into()))],
                    value: 123456789.0,
                }],
            },
        ];
        let text = render(&resources);
        assert!(text.contains("# TYPE k8s_pod_network_io_bytes_total counter\n"), "{text}");
        assert!(
            text.contains(
                "k8s_pod_network_io_bytes_total{k8s_pod_uid=\"u\\\"1\",k8s_node_name=\"n1\",k8s_cluster_name=\"bakery\",network_io_direction=\"receive\"} 123456789\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE system_memory_limit_bytes gauge\n"), "{text}");
        assert!(!text.contains("host_name"), "only the promoted resource attributes become labels: {text}");
        assert!(!text.contains("service_instance_id"), "{text}");
    }
}
