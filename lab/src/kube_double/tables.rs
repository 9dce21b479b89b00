//! Server-side printing: the `meta.k8s.io/v1` `Table` a real API server returns when a client
//! asks for one (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, what `kubectl get`
//! sends), with the columns the API server prints for the built-in kinds (those `kubectl get`
//! shows, `-o wide` ones at priority 1) and, for MetalLB's kinds, the `additionalPrinterColumns` of
//! their CRDs (which replace the default Age column, as on a real server). Pure: time is an
//! argument.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::Kind;

/// A column definition (`TableColumnDefinition`).
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u32,
}

const fn column(name: &'static str) -> Column {
    Column { name, kind: "string", format: "", priority: 0 }
}

const NAME: Column = Column { name: "Name", kind: "string", format: "name", priority: 0 };
const AGE: Column = column("Age");

const fn wide(name: &'static str) -> Column {
    Column { name, kind: "string", format: "", priority: 1 }
}

/// What each row carries besides its cells (`?includeObject=`): the object's metadata unless asked
/// otherwise, which `kubectl get -A` needs for its NAMESPACE column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(value: Option<&str>) -> Include {
        match value {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// A Table of `objects` (all of `kind`) as of `now`.
pub fn table(kind: Kind, objects: &[&Value], resource_version: u64, include: Include, now: SystemTime) -> Value {
    let columns: Vec<Value> = row(kind, &json!({}), now)
        .iter()
        .map(|(c, _)| {
            json!({"name": c.name, "type": c.kind, "format": c.format, "description": "", "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = row(kind, object, now).into_iter().map(|(_, cell)| cell).collect();
            match include {
                Include::None => json!({"cells": cells}),
                Include::Object => json!({"cells": cells, "object": object}),
                Include::Metadata => json!({"cells": cells, "object": {
                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]}}),
            }
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn text(object: &Value, path: &str) -> String {
    at(object, path).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(object, |v, part| v.get(part))
}

fn array<'a>(object: &'a Value, path: &str) -> &'a [Value] {
    at(object, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn or_none(text: String) -> String {
    if text.is_empty() { "<none>".into() } else { text }
}

/// A CRD printer column's cell: strings and booleans as they are, anything else as compact
/// JSON (what the API server's JSONPath printer gives), absent as null (kubectl: `<none>`).
fn crd_cell(object: &Value, path: &str) -> Value {
    match at(object, path) {
        None | Some(Value::Null) => Value::Null,
        Some(value @ (Value::String(_) | Value::Bool(_))) => value.clone(),
        Some(other) => Value::String(other.to_string()),
    }
}

/// The columns and cells of one object (the column list is the same for every object of a kind).
fn row(kind: Kind, o: &Value, now: SystemTime) -> Vec<(Column, Value)> {
    let name = json!(text(o, "metadata.name"));
    let age = json!(age(o, now));
    match kind {
        Kind::Namespace => vec![(NAME, name), (column("Status"), json!(text(o, "status.phase"))), (AGE, age)],
        Kind::Node => vec![
            (NAME, name),
            (column("Status"), json!(node_status(o))),
            (column("Roles"), json!(node_roles(o))),
            (AGE, age),
            (column("Version"), json!(text(o, "status.nodeInfo.kubeletVersion"))),
            (wide("Internal-IP"), json!(node_address(o, "InternalIP"))),
            (wide("External-IP"), json!(node_address(o, "ExternalIP"))),
        ],
        Kind::Pod => {
            let statuses = array(o, "status.containerStatuses");
            let ready = statuses.iter().filter(|s| s["ready"] == json!(true)).count();
            let restarts: i64 = statuses.iter().filter_map(|s| s["restartCount"].as_i64()).sum();
            vec![
                (NAME, name),
                (column("Ready"), json!(format!("{ready}/{}", array(o, "spec.containers").len()))),
                (column("Status"), json!(pod_status(o))),
                (Column { kind: "integer", ..column("Restarts") }, json!(restarts)),
                (AGE, age),
                (wide("IP"), json!(or_none(text(o, "status.podIP")))),
                (wide("Node"), json!(or_none(text(o, "spec.nodeName")))),
            ]
        }
        Kind::Service => vec![
            (NAME, name),
            (column("Type"), json!(service_type(o))),
            (column("Cluster-IP"), json!(or_none(text(o, "spec.clusterIP")))),
            (column("External-IP"), json!(service_external_ip(o))),
            (column("Port(s)"), json!(service_ports(o))),
            (AGE, age),
            (wide("Selector"), json!(selector_text(at(o, "spec.selector")))),
        ],
        Kind::Secret => {
            let data = at(o, "data").and_then(Value::as_object).map_or(0, serde_json::Map::len);
            vec![
                (NAME, name),
                (column("Type"), json!(text(o, "type"))),
                (Column { kind: "integer", ..column("Data") }, json!(data)),
                (AGE, age),
            ]
        }
        Kind::EndpointSlice => endpoint_slice_row(o, name, age),
        Kind::ReplicaSet => {
            let count = |path: &str, default: i64| json!(at(o, path).and_then(Value::as_i64).unwrap_or(default));
            let integer = |name| Column { kind: "integer", ..column(name) };
            vec![
                (NAME, name),
                (integer("Desired"), count("spec.replicas", 1)),
                (integer("Current"), count("status.replicas", 0)),
                (integer("Ready"), count("status.readyReplicas", 0)),
                (AGE, age),
            ]
        }
        Kind::ServiceL2Status
        | Kind::ServiceBGPStatus
        | Kind::L2Advertisement
        | Kind::BGPAdvertisement
        | Kind::IPAddressPool => metallb_row(kind, o, name),
    }
}

/// The columns and cells of an EndpointSlice: its first three addresses, then how many more.
fn endpoint_slice_row(o: &Value, name: Value, age: Value) -> Vec<(Column, Value)> {
    let ports: Vec<String> =
        array(o, "ports").iter().filter_map(|p| p["port"].as_i64()).map(|p| p.to_string()).collect();
    let addresses: Vec<&str> = array(o, "endpoints")
        .iter()
        .flat_map(|e| e["addresses"].as_array().map(Vec::as_slice).unwrap_or_default())
        .filter_map(Value::as_str)
        .collect();
    let endpoints = match addresses.len() {
        0 => "<unset>".to_string(),
        n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
        _ => addresses.join(","),
    };
    vec![
        (NAME, name),
        (column("AddressType"), json!(text(o, "addressType"))),
        (column("Ports"), json!(if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") })),
        (column("Endpoints"), json!(endpoints)),
        (AGE, age),
    ]
}

/// The columns and cells of one of MetalLB's objects: the printer columns its CRDs declare.
fn metallb_row(kind: Kind, o: &Value, name: Value) -> Vec<(Column, Value)> {
    match kind {
        Kind::ServiceL2Status => vec![
            (NAME, name),
            (column("Allocated Node"), crd_cell(o, "status.node")),
            (column("Service Name"), crd_cell(o, "status.serviceName")),
            (column("Service Namespace"), crd_cell(o, "status.serviceNamespace")),
        ],
        Kind::ServiceBGPStatus => vec![
            (NAME, name),
            (column("Node"), crd_cell(o, "status.node")),
            (column("Service Name"), crd_cell(o, "status.serviceName")),
            (column("Service Namespace"), crd_cell(o, "status.serviceNamespace")),
        ],
        Kind::L2Advertisement => vec![
            (NAME, name),
            (column("IPAddressPools"), crd_cell(o, "spec.ipAddressPools")),
            (column("IPAddressPool Selectors"), crd_cell(o, "spec.ipAddressPoolSelectors")),
            (column("Interfaces"), crd_cell(o, "spec.interfaces")),
            (Column { priority: 10, ..column("Node Selectors") }, crd_cell(o, "spec.nodeSelectors")),
        ],
        Kind::BGPAdvertisement => vec![
            (NAME, name),
            (column("IPAddressPools"), crd_cell(o, "spec.ipAddressPools")),
            (column("IPAddressPool Selectors"), crd_cell(o, "spec.ipAddressPoolSelectors")),
            (column("Peers"), crd_cell(o, "spec.peers")),
            (Column { priority: 10, ..column("Node Selectors") }, crd_cell(o, "spec.nodeSelectors")),
        ],
        Kind::IPAddressPool => vec![
            (NAME, name),
            (Column { kind: "boolean", ..column("Auto Assign") }, crd_cell(o, "spec.autoAssign")),
            (Column { kind: "boolean", ..column("Avoid Buggy IPs") }, crd_cell(o, "spec.avoidBuggyIPs")),
            (column("Addresses"), crd_cell(o, "spec.addresses")),
        ],
        // The built-in kinds are `row`'s.
        _ => vec![(NAME, name)],
    }
}

fn node_status(node: &Value) -> String {
    let ready = array(node, "status.conditions").iter().find(|c| c["type"] == "Ready").map(|c| &c["status"]);
    let mut status = match ready.and_then(Value::as_str) {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if at(node, "spec.unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = at(node, "metadata.labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => Some(role),
                    _ if key == "kubernetes.io/role" => value.as_str(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() { "<none>".into() } else { roles.join(",") }
}

fn node_address(node: &Value, kind: &str) -> String {
    let address = array(node, "status.addresses").iter().find(|a| a["type"] == kind);
    or_none(address.and_then(|a| a["address"].as_str()).unwrap_or_default().to_string())
}

fn pod_status(pod: &Value) -> String {
    if at(pod, "metadata.deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return "Terminating".into();
    }
    let container_reason = array(pod, "status.containerStatuses")
        .iter()
        .find_map(|s| s["state"]["waiting"]["reason"].as_str().or_else(|| s["state"]["terminated"]["reason"].as_str()));
    let reason = text(pod, "status.reason");
    let phase = text(pod, "status.phase");
    container_reason
        .map(str::to_string)
        .or((!reason.is_empty()).then_some(reason))
        .or((!phase.is_empty()).then_some(phase))
        .unwrap_or_else(|| "Unknown".into())
}

fn service_type(service: &Value) -> String {
    let kind = text(service, "spec.type");
    if kind.is_empty() { "ClusterIP".into() } else { kind }
}

fn service_external_ip(service: &Value) -> String {
    let external: Vec<&str> = array(service, "spec.externalIPs").iter().filter_map(Value::as_str).collect();
    match service_type(service).as_str() {
        "LoadBalancer" => {
            let mut ips: Vec<&str> = array(service, "status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
                .collect();
            ips.extend(external);
            if ips.is_empty() { "<pending>".into() } else { ips.join(",") }
        }
        "ExternalName" => text(service, "spec.externalName"),
        _ => or_none(external.join(",")),
    }
}

fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = array(service, "spec.ports")
        .iter()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            let port = p["port"].as_i64().unwrap_or_default();
            match p["nodePort"].as_i64() {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn selector_text(selector: Option<&Value>) -> String {
    let pairs: Vec<String> = selector
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    or_none(pairs.join(","))
}

/// The Age cell: time since `metadata.creationTimestamp` (`<unknown>` without one).
fn age(object: &Value, now: SystemTime) -> String {
    let Some(created) = at(object, "metadata.creationTimestamp").and_then(Value::as_str) else {
        return "<unknown>".into();
    };
    match humantime::parse_rfc3339_weak(created) {
        Ok(created) => match now.duration_since(created) {
            Ok(elapsed) => human_duration(elapsed),
            Err(_) => "0s".into(),
        },
        Err(_) => "<invalid>".into(),
    }
}

/// An age as `kubectl get` shows it: two units while the larger one is small, one unit after.
pub fn human_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 { format!("{big}{big_unit}") } else { format!("{big}{big_unit}{small}{small_unit}") }
    };
    if seconds < 60 * 2 {
        format!("{seconds}s")
    } else if minutes < 10 {
        pair(minutes, "m", seconds % 60, "s")
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        pair(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        pair(hours / 24, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        pair(hours / 24 / 365, "y", (hours / 24) % 365, "d")
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (180, "3m"),
            (45 * 60, "45m"),
            (3 * 3600 + 60, "3h1m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(Duration::from_secs(seconds)), expected, "{seconds} s");
        }
    }

    #[test]
    fn rows_carry_the_printers_cells() {
        let now = humantime::parse_rfc3339("2026-01-01T01:00:00Z").unwrap();
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-01-01T00:58:00Z"},
            "spec": {"nodeName": "pi-2", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.7",
                       "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}
        });
        let t = table(Kind::Pod, &[&pod], 9, Include::Metadata, now);
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"]);
        assert_eq!(t["rows"][0]["cells"], json!(["web-1", "1/2", "Running", 3, "2m", "10.42.0.7", "pi-2"]));
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "shop");
        assert_eq!(t["metadata"]["resourceVersion"], "9");

        let service = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}]}}});
        let cells = &table(Kind::Service, &[&service], 1, Include::None, now)["rows"][0]["cells"];
        assert_eq!(
            cells,
            &json!(["web", "LoadBalancer", "10.43.0.10", "192.168.1.240", "80:30080/TCP", "<unknown>", "app=web"])
        );

        let status = json!({"metadata": {"name": "l2-x7k2p"}, "status": {"node": "pi-3", "serviceName": "web"}});
        let t = table(Kind::ServiceL2Status, &[&status], 1, Include::None, now);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["l2-x7k2p", "pi-3", "web", null]),
            "no Age column: the CRD declares its own"
        );

        let secret = json!({"metadata": {"name": "bakery-read-token", "creationTimestamp": "2026-01-01T00:00:00Z"},
                            "type": "kubernetes.io/service-account-token", "data": {"token": "dA==", "ca.crt": "Yw=="}});
        let t = table(Kind::Secret, &[&secret], 1, Include::None, now);
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Type", "Data", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["bakery-read-token", "kubernetes.io/service-account-token", 2, "60m"])
        );

        let node = json!({"metadata": {"name": "pi-1", "labels": {"node-role.kubernetes.io/control-plane": "true",
            "node-role.kubernetes.io/master": "true"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let cells = &table(Kind::Node, &[&node], 1, Include::None, now)["rows"][0]["cells"];
        assert_eq!((&cells[1], &cells[2]), (&json!("Ready"), &json!("control-plane,master")));
    }
}
