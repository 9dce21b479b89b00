//! The name table test: every exported metric held against a table written from the
//! OpenTelemetry semantic-conventions registry, **v1.44.0** (model/system, model/k8s,
//! model/hardware, model/network and model/cpu of github.com/open-telemetry/semantic-conventions
//! at tag v1.44.0): name, unit, instrument, value type (`metric_value_type`) and attribute keys,
//! with the values where the registry enumerates them. bakery's own `bakery.*` metrics are in the
//! table by bakery's rules (the `bakery.` prefix, UCUM units, `{annotation}` for counts,
//! integers for counts). A metric missing from the table, or a table row never exported, fails.
//! The test reads what the OpenTelemetry SDK really produces (instrument, value type, unit) as
//! well as the export model.

use std::collections::HashMap;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};

use super::model::tests::example_resources;
use super::model::{ALL, Kind, Number, ResourcePoints};

/// An attribute's allowed values.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Free-form (names, ids, numbers).
    Any,
    /// The registry's (or bakery's) enumerated values.
    OneOf(&'static [&'static str]),
}
use Values::{Any, OneOf};

/// Which resource carries the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Node,
    /// The pod's own resource (`k8s.pod.uid`, `k8s.node.name`, and name and namespace when known).
    Pod,
    Collector,
}

struct Row {
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    number: Number,
    on: On,
    attributes: &'static [(&'static str, Values)],
}

const fn row(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    number: Number,
    on: On,
    attributes: &'static [(&'static str, Values)],
) -> Row {
    Row { name, unit, kind, number, on, attributes }
}

use Kind::{Counter, Gauge, UpDownCounter};
use Number::{Double, Int};

/// `cpu.mode` (model/cpu/registry.yaml) plus `softirq`: the enum is open, and bakery keeps
/// softirq apart from interrupt because the ingress diagnosis reads it.
const CPU_MODE: Values =
    OneOf(&["user", "system", "nice", "idle", "iowait", "interrupt", "steal", "kernel", "softirq"]);
/// `network.io.direction` (model/network/registry.yaml).
const DIRECTION: Values = OneOf(&["transmit", "receive"]);
/// `system.memory.state` (model/system/registry.yaml; `shared` is deprecated there).
const MEMORY_STATE: Values = OneOf(&["used", "free", "buffers", "cached"]);
/// `network.connection.state` (model/network/registry.yaml).
const CONNECTION_STATE: Values = OneOf(&[
    "closed",
    "close_wait",
    "closing",
    "established",
    "fin_wait_1",
    "fin_wait_2",
    "last_ack",
    "listen",
    "syn_received",
    "syn_sent",
    "time_wait",
]);
/// `hw.limit_type` (model/hardware/registry.yaml).
const LIMIT_TYPE: Values = OneOf(&[
    "critical",
    "degraded",
    "high.critical",
    "high.degraded",
    "low.critical",
    "low.degraded",
    "max",
    "throttled",
    "turbo",
]);
/// A workload's diagnosis series.
const WORKLOAD: &[(&str, Values)] = &[("k8s.namespace.name", Any), ("bakery.workload.name", Any)];

const TABLE: &[Row] = &[
    // model/system/metrics.yaml (and model/cpu for the attributes).
    row("system.cpu.time", "s", Counter, Double, On::Node, &[("cpu.mode", CPU_MODE), ("cpu.logical_number", Any)]),
    row("system.cpu.utilization", "1", Gauge, Double, On::Node, &[("cpu.mode", CPU_MODE), ("cpu.logical_number", Any)]),
    row("system.cpu.frequency", "Hz", Gauge, Int, On::Node, &[("cpu.logical_number", Any)]),
    row("system.memory.usage", "By", UpDownCounter, Int, On::Node, &[("system.memory.state", MEMORY_STATE)]),
    row("system.memory.limit", "By", UpDownCounter, Int, On::Node, &[]),
    row("system.memory.linux.available", "By", UpDownCounter, Int, On::Node, &[]),
    row(
        "system.network.io",
        "By",
        Counter,
        Int,
        On::Node,
        &[("network.interface.name", Any), ("network.io.direction", DIRECTION)],
    ),
    // The registry names the interface `system.device` on this one metric.
    row(
        "system.network.packet.count",
        "{packet}",
        Counter,
        Int,
        On::Node,
        &[("system.device", Any), ("network.io.direction", DIRECTION)],
    ),
    row(
        "system.network.packet.dropped",
        "{packet}",
        Counter,
        Int,
        On::Node,
        &[("network.interface.name", Any), ("network.io.direction", DIRECTION)],
    ),
    row(
        "system.network.errors",
        "{error}",
        Counter,
        Int,
        On::Node,
        &[("network.interface.name", Any), ("network.io.direction", DIRECTION)],
    ),
    // model/hardware: cpu-metrics.yaml, temperature-metrics.yaml (hw.id required).
    row("hw.cpu.speed", "Hz", Gauge, Int, On::Node, &[("hw.id", Any)]),
    row("hw.cpu.speed.limit", "Hz", Gauge, Int, On::Node, &[("hw.id", Any), ("hw.limit_type", LIMIT_TYPE)]),
    row("hw.temperature", "Cel", Gauge, Double, On::Node, &[("hw.id", Any)]),
    // model/k8s/metrics.yaml.
    row(
        "k8s.pod.network.io",
        "By",
        Counter,
        Int,
        On::Pod,
        &[("network.interface.name", Any), ("network.io.direction", DIRECTION)],
    ),
    row(
        "k8s.pod.network.errors",
        "{error}",
        Counter,
        Int,
        On::Pod,
        &[("network.interface.name", Any), ("network.io.direction", DIRECTION)],
    ),
    row("k8s.pod.cpu.time", "s", Counter, Double, On::Pod, &[]),
    row("k8s.pod.memory.working_set", "By", UpDownCounter, Int, On::Pod, &[]),
    // bakery's own: no convention exists.
    row(
        "bakery.pressure.stall.time",
        "s",
        Counter,
        Double,
        On::Node,
        &[
            ("bakery.pressure.resource", OneOf(&["cpu", "memory", "io", "irq"])),
            ("bakery.pressure.kind", OneOf(&["some", "full"])),
        ],
    ),
    row(
        "bakery.pressure.avg10",
        "1",
        Gauge,
        Double,
        On::Node,
        &[
            ("bakery.pressure.resource", OneOf(&["cpu", "memory", "io", "irq"])),
            ("bakery.pressure.kind", OneOf(&["some", "full"])),
        ],
    ),
    row(
        "bakery.throttle.flag",
        "{flag}",
        Gauge,
        Int,
        On::Node,
        &[
            (
                "bakery.throttle.flag",
                OneOf(&["under_voltage", "arm_frequency_capped", "throttled", "soft_temperature_limit"]),
            ),
            ("bakery.throttle.scope", OneOf(&["now", "since_boot"])),
        ],
    ),
    row("bakery.conntrack.entries", "{entry}", UpDownCounter, Int, On::Node, &[]),
    row("bakery.conntrack.limit", "{entry}", UpDownCounter, Int, On::Node, &[]),
    // As system.network.connection.count: an UpDownCounter of `{connection}` by
    // `network.connection.state`; ESTABLISHED also by direction.
    row(
        "bakery.pod.tcp.connections",
        "{connection}",
        UpDownCounter,
        Int,
        On::Pod,
        &[
            ("network.connection.state", CONNECTION_STATE),
            ("bakery.connection.direction", OneOf(&["inbound", "outbound"])),
        ],
    ),
    row(
        "bakery.traffic.share.observed",
        "1",
        Gauge,
        Double,
        On::Collector,
        &[("k8s.namespace.name", Any), ("bakery.workload.name", Any), ("k8s.node.name", Any)],
    ),
    row(
        "bakery.traffic.share.expected",
        "1",
        Gauge,
        Double,
        On::Collector,
        &[("k8s.namespace.name", Any), ("bakery.workload.name", Any), ("k8s.node.name", Any)],
    ),
    row("bakery.imbalance.score", "1", Gauge, Double, On::Collector, WORKLOAD),
    row(
        "bakery.hog.active",
        "{verdict}",
        Gauge,
        Int,
        On::Collector,
        &[
            ("k8s.namespace.name", Any),
            ("bakery.workload.name", Any),
            ("k8s.node.name", Any),
            ("bakery.hog.cause", Any),
        ],
    ),
    row("bakery.hog.verdicts", "{verdict}", Gauge, Int, On::Collector, &[("bakery.hog.cause", Any)]),
    row(
        "bakery.window.active",
        "{window}",
        Gauge,
        Int,
        On::Collector,
        &[("bakery.window.id", Any), ("bakery.window.name", Any)],
    ),
    row("bakery.export.dropped", "{export}", Counter, Int, On::Collector, &[]),
    row("bakery.collector.auth.refusals", "{refusal}", Counter, Int, On::Collector, &[("cause", Any)]),
    row("bakery.collector.ingest.refusals", "{refusal}", Counter, Int, On::Collector, &[("cause", Any)]),
    row("bakery.agent.reporting", "{agent}", Gauge, Int, On::Collector, &[("k8s.node.name", Any)]),
    row("bakery.collector.commit.last_success.timestamp", "s", Gauge, Double, On::Collector, &[]),
    row("bakery.collector.commit.failures", "{commit}", Counter, Int, On::Collector, &[]),
];

fn table_row(name: &str) -> &'static Row {
    TABLE.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name} is exported but not in the name table"))
}

fn resource_kind(resource: &ResourcePoints) -> On {
    let has = |key: &str| resource.resource.iter().any(|(k, _)| *k == key);
    if has("k8s.pod.uid") {
        On::Pod
    } else if has("host.name") {
        On::Node
    } else {
        On::Collector
    }
}

fn check_attributes<'a>(metric: &str, row: &Row, attributes: impl Iterator<Item = (&'a str, String)>) {
    for (key, value) in attributes {
        let Some((_, values)) = row.attributes.iter().find(|(k, _)| *k == key) else {
            panic!("{metric}: attribute {key} is not in the name table");
        };
        if let OneOf(allowed) = values {
            assert!(allowed.contains(&value.as_str()), "{metric}: {key}={value} is not one of {allowed:?}");
        }
    }
}

#[test]
fn every_exported_metric_matches_the_semantic_conventions_table() {
    let resources = example_resources();
    let mut exported: HashMap<&str, usize> = HashMap::new();
    for resource in &resources {
        let on = resource_kind(resource);
        if on == On::Pod {
            for key in ["k8s.pod.uid", "k8s.pod.name", "k8s.namespace.name", "k8s.node.name", "service.instance.id"] {
                assert!(resource.resource.iter().any(|(k, _)| *k == key), "pod resource without {key}");
            }
        }
        for point in &resource.points {
            let metric = point.metric;
            let row = table_row(metric.name);
            *exported.entry(row.name).or_default() += 1;
            assert_eq!(
                (metric.unit, metric.kind, metric.number, on),
                (row.unit, row.kind, row.number, row.on),
                "{}: unit, instrument, value type, resource",
                metric.name
            );
            check_attributes(metric.name, row, point.attributes.iter().map(|(k, v)| (*k, v.to_string())));
            if row.number == Number::Int {
                assert_eq!(point.value.fract(), 0.0, "{}: an integer metric with {}", metric.name, point.value);
            }
        }
    }
    for row in TABLE {
        assert!(exported.contains_key(row.name), "{} is in the table but never exported", row.name);
        assert!(ALL.iter().any(|m| m.name == row.name), "{} is in the table but not in the catalogue", row.name);
    }
    assert_eq!(TABLE.len(), ALL.len(), "one row per catalogued metric");
}

#[test]
fn the_sdk_sends_each_metric_as_the_table_says() {
    for resource in example_resources() {
        let collected = super::otlp::collect_once(&resource).expect("the SDK collects");
        let mut seen = 0;
        for scope in collected.scope_metrics() {
            for metric in scope.metrics() {
                let row = table_row(metric.name());
                assert_eq!(metric.unit(), row.unit, "{}", row.name);
                // (instrument, value type, monotonic) as the SDK aggregated it.
                let (kind, number) = match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) if sum.is_monotonic() => (Counter, Int),
                    AggregatedMetrics::I64(MetricData::Sum(sum)) if !sum.is_monotonic() => (UpDownCounter, Int),
                    AggregatedMetrics::I64(MetricData::Gauge(_)) => (Gauge, Int),
                    AggregatedMetrics::F64(MetricData::Sum(sum)) if sum.is_monotonic() => (Counter, Double),
                    AggregatedMetrics::F64(MetricData::Sum(_)) => (UpDownCounter, Double),
                    AggregatedMetrics::F64(MetricData::Gauge(_)) => (Gauge, Double),
                    other => panic!("{}: unexpected aggregation {other:?}", row.name),
                };
                assert_eq!((kind, number), (row.kind, row.number), "{}", row.name);
                let attributes: Vec<Vec<(String, String)>> = match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        sum.data_points().map(|p| pairs(p.attributes())).collect()
                    }
                    AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                        sum.data_points().map(|p| pairs(p.attributes())).collect()
                    }
                    AggregatedMetrics::I64(MetricData::Gauge(gauge)) => {
                        gauge.data_points().map(|p| pairs(p.attributes())).collect()
                    }
                    AggregatedMetrics::F64(MetricData::Sum(sum)) => {
                        sum.data_points().map(|p| pairs(p.attributes())).collect()
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                        gauge.data_points().map(|p| pairs(p.attributes())).collect()
                    }
                    _ => Vec::new(),
                };
                assert!(!attributes.is_empty(), "{}: no data points", row.name);
                for point in attributes {
                    check_attributes(row.name, row, point.iter().map(|(k, v)| (k.as_str(), v.clone())));
                }
                seen += 1;
            }
        }
        let expected = {
            let mut names: Vec<&str> = resource.points.iter().map(|p| p.metric.name).collect();
            names.sort_unstable();
            names.dedup();
            names.len()
        };
        assert_eq!(seen, expected, "{}: every metric with points is sent", resource.instance);
        if resource_kind(&resource) == On::Pod {
            let attributes: Vec<(String, String)> =
                collected.resource().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            for key in ["k8s.pod.uid", "k8s.pod.name", "k8s.namespace.name", "k8s.node.name"] {
                assert!(
                    attributes.iter().any(|(k, _)| k == key),
                    "the pod's OTLP resource lacks {key}: {attributes:?}"
                );
            }
        }
    }
}

fn pairs<'a>(attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<(String, String)> {
    attributes
        .map(|kv| {
            let value = match &kv.value {
                Value::String(s) => s.to_string(),
                other => other.to_string(),
            };
            (kv.key.to_string(), value)
        })
        .collect()
}
