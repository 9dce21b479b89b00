//! Which collector Service, which of its ports and which ready pod behind it a port-forward goes to, decided from listed objects (no IO).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label every object of the chart carries with the chart's name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label naming the component (`collector`, `agent`).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The label naming the Helm release.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The chart's name, as its `app.kubernetes.io/name` label says it.
pub const CHART_NAME: &str = "bakery";

/// Annotation on the collector Service naming the Secret (key `token`) with the read token. The
/// chart writes it; without it the collector takes no token.
pub const READ_TOKEN_SECRET_ANNOTATION: &str = "bakery.dev/read-token-secret";
/// Annotation on the collector Service naming the Secret (key `ca.crt`) with the CA that signed the
/// collector's certificate. The chart writes it when TLS is on; without it the collector is plain.
pub const TLS_SECRET_ANNOTATION: &str = "bakery.dev/tls-secret";

/// The name of the Service port bakery-top speaks to (ingest and Query share it).
pub const GRPC_PORT_NAME: &str = "grpc";

/// The label selector that finds collector Services, of one release or of any.
pub fn collector_selector(release: Option<&str>) -> String {
    let mut selector = format!("{NAME_LABEL}={CHART_NAME},{COMPONENT_LABEL}=collector");
    if let Some(release) = release {
        selector.push_str(&format!(",{INSTANCE_LABEL}={release}"));
    }
    selector
}

/// Why no single collector Service or pod could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("no bakery collector Service {where_} (looked for the labels {selector})")]
    NoService { where_: String, selector: String },
    #[error("several bakery collector Services {where_}: {}; choose one with --release or --namespace", names.join(", "))]
    SeveralServices { where_: String, names: Vec<String> },
    #[error(
        "the Service {service} has no port named {GRPC_PORT_NAME:?} and {count} ports, so which one is the collector's is unclear"
    )]
    NoGrpcPort { service: String, count: usize },
    #[error("the Service {service} selects no pods (it has no selector)")]
    NoSelector { service: String },
    #[error(
        "no ready pod behind the Service {service} ({pods} selected, none Running and Ready): is the collector up?"
    )]
    NoReadyPod { service: String, pods: usize },
    #[error("the Service {service} targets the port {port:?}, which no container of the pod {pod} declares")]
    UnknownTargetPort { service: String, port: String, pod: String },
}

/// `namespace/name` of an object, for messages.
pub fn full_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or("default"), meta.name.as_deref().unwrap_or("?"))
}

/// The one collector Service among `services` (what a label-selected list returned). `where_` says
/// where they were looked for ("in the namespace bakery", "in any namespace").
pub fn one_service(services: Vec<Service>, where_: &str, selector: &str) -> Result<Service, PickError> {
    let mut services = services;
    match services.len() {
        0 => Err(PickError::NoService { where_: where_.to_string(), selector: selector.to_string() }),
        1 => Ok(services.remove(0)),
        _ => {
            let mut names: Vec<String> = services.iter().map(|s| full_name(&s.metadata)).collect();
            names.sort();
            Err(PickError::SeveralServices { where_: where_.to_string(), names })
        }
    }
}

/// The Service's gRPC port: the one named `grpc`, or its only port.
pub fn grpc_port(service: &Service) -> Result<&ServicePort, PickError> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref()).map(Vec::as_slice).unwrap_or_default();
    match ports.iter().find(|p| p.name.as_deref() == Some(GRPC_PORT_NAME)) {
        Some(port) => Ok(port),
        None if ports.len() == 1 => Ok(&ports[0]),
        None => Err(PickError::NoGrpcPort { service: full_name(&service.metadata), count: ports.len() }),
    }
}

/// The gRPC port's target as the Service declares it (a number, or a container port's name).
pub fn grpc_target(service: &Service) -> Result<IntOrString, PickError> {
    let port = grpc_port(service)?;
    // Without targetPort, Kubernetes forwards to the same number as the port.
    Ok(port.target_port.clone().unwrap_or(IntOrString::Int(port.port)))
}

/// The label selector of the Service's pods (`key=value,...`).
pub fn pod_selector(service: &Service) -> Result<String, PickError> {
    let selector: Option<&BTreeMap<String, String>> = service.spec.as_ref().and_then(|s| s.selector.as_ref());
    match selector {
        Some(labels) if !labels.is_empty() => {
            Ok(labels.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(","))
        }
        _ => Err(PickError::NoSelector { service: full_name(&service.metadata) }),
    }
}

/// Whether a pod can take a port-forward now: Running, not being deleted, and Ready.
pub fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    running && ready && pod.metadata.deletion_timestamp.is_none()
}

/// The pod to forward to and the container port: the newest ready pod (after a rollout, the one
/// that stays), with a named target port resolved against its containers.
pub fn ready_pod(service: &Service, pods: &[Pod], target: &IntOrString) -> Result<(String, u16), PickError> {
    let newest = pods
        .iter()
        .filter(|pod| is_ready(pod))
        .max_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
        .ok_or_else(|| PickError::NoReadyPod { service: full_name(&service.metadata), pods: pods.len() })?;
    let name = newest.metadata.name.clone().unwrap_or_default();
    let port = match target {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(port_name) => newest
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .flat_map(|container| container.ports.iter().flatten())
            .find(|port| port.name.as_deref() == Some(port_name.as_str()))
            .and_then(|port| u16::try_from(port.container_port).ok()),
    };
    let unknown = || PickError::UnknownTargetPort {
        service: full_name(&service.metadata),
        port: match target {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        },
        pod: name.clone(),
    };
    Ok((name.clone(), port.ok_or_else(unknown)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, created: &str, phase: &str, ready: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "bakery", "creationTimestamp": created},
            "spec": {"containers": [{"name": "collector", "ports": [{"name": "grpc", "containerPort": 7431}]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap()
    }

    fn collector_service() -> Service {
        service(json!({
            "metadata": {"name": "bakery-collector", "namespace": "bakery"},
            "spec": {"selector": {"app.kubernetes.io/component": "collector", "app.kubernetes.io/instance": "bakery"},
                     "ports": [{"name": "metrics", "port": 9464}, {"name": "grpc", "port": 7431, "targetPort": "grpc"}]}
        }))
    }

    #[test]
    fn a_release_narrows_the_selector() {
        assert_eq!(collector_selector(None), "app.kubernetes.io/name=bakery,app.kubernetes.io/component=collector");
        assert!(collector_selector(Some("prod")).ends_with(",app.kubernetes.io/instance=prod"));
    }

    #[test]
    fn exactly_one_service_is_chosen_and_otherwise_the_message_says_what_to_give() {
        let none = one_service(vec![], "in any namespace", "a=b").unwrap_err();
        assert!(none.to_string().contains("no bakery collector Service in any namespace"), "{none}");
        let other = service(json!({"metadata": {"name": "bakery-collector", "namespace": "staging"}}));
        let several = one_service(vec![collector_service(), other], "in any namespace", "a=b").unwrap_err();
        let text = several.to_string();
        assert!(
            text.contains("bakery/bakery-collector, staging/bakery-collector") && text.contains("--release"),
            "{text}"
        );
        assert_eq!(one_service(vec![collector_service()], "", "").unwrap().metadata.name.unwrap(), "bakery-collector");
    }

    #[test]
    fn the_grpc_port_is_found_by_name_or_as_the_only_port() {
        assert_eq!(grpc_target(&collector_service()).unwrap(), IntOrString::String("grpc".into()));
        let single = service(json!({"metadata": {"name": "c"}, "spec": {"ports": [{"port": 8080}]}}));
        assert_eq!(grpc_target(&single).unwrap(), IntOrString::Int(8080), "no targetPort: the port itself");
        let two = service(
            json!({"metadata": {"name": "c"}, "spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}}),
        );
        assert!(matches!(grpc_target(&two), Err(PickError::NoGrpcPort { count: 2, .. })));
    }

    #[test]
    fn the_newest_ready_pod_is_chosen_and_a_named_port_resolved() {
        let pods = [
            pod("old", "2026-12-01T10:00:00Z", "Running", "True"),
            pod("new", "2026-12-07T10:00:00Z", "Running", "True"),
            pod("newest-not-ready", "2026-12-07T11:00:00Z", "Running", "False"),
            pod("pending", "2026-12-07T12:00:00Z", "Pending", "False"),
        ];
        let target = grpc_target(&collector_service()).unwrap();
        assert_eq!(ready_pod(&collector_service(), &pods, &target).unwrap(), ("new".to_string(), 7431));
        let error = ready_pod(&collector_service(), &pods[2..], &target).unwrap_err();
        assert_eq!(error, PickError::NoReadyPod { service: "bakery/bakery-collector".into(), pods: 2 });
        let missing = IntOrString::String("http".into());
        assert!(matches!(ready_pod(&collector_service(), &pods, &missing), Err(PickError::UnknownTargetPort { .. })));
        assert_eq!(ready_pod(&collector_service(), &pods, &IntOrString::Int(9000)).unwrap().1, 9000);
    }

    #[test]
    fn the_pod_selector_comes_from_the_service() {
        assert_eq!(
            pod_selector(&collector_service()).unwrap(),
            "app.kubernetes.io/component=collector,app.kubernetes.io/instance=bakery"
        );
        let headless = service(json!({"metadata": {"name": "c", "namespace": "x"}, "spec": {}}));
        assert_eq!(pod_selector(&headless).unwrap_err(), PickError::NoSelector { service: "x/c".into() });
    }
}
