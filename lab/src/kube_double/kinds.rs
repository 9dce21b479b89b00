//! The kinds the double serves: each one's API group and version, plural, scope, short names,
//! and whether it is a custom resource (MetalLB's) that a state must install to be served.

/// MetalLB's API group-version (its CRDs), the one installable API the double knows.
pub const METALLB_API: &str = "metallb.io/v1beta1";

/// A kind the double serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Secret,
    EndpointSlice,
    ReplicaSet,
    ServiceL2Status,
    ServiceBGPStatus,
    L2Advertisement,
    BGPAdvertisement,
    IPAddressPool,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::Secret,
        Kind::EndpointSlice,
        Kind::ReplicaSet,
        Kind::ServiceL2Status,
        Kind::ServiceBGPStatus,
        Kind::L2Advertisement,
        Kind::BGPAdvertisement,
        Kind::IPAddressPool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Secret => "Secret",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ServiceL2Status => "ServiceL2Status",
            Kind::ServiceBGPStatus => "ServiceBGPStatus",
            Kind::L2Advertisement => "L2Advertisement",
            Kind::BGPAdvertisement => "BGPAdvertisement",
            Kind::IPAddressPool => "IPAddressPool",
        }
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service | Kind::Secret => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::ReplicaSet => "apps",
            _ => "metallb.io",
        }
    }

    pub fn version(self) -> &'static str {
        if self.group() == "metallb.io" { "v1beta1" } else { "v1" }
    }

    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "discovery.k8s.io" => "discovery.k8s.io/v1",
            "apps" => "apps/v1",
            _ => METALLB_API,
        }
    }

    /// The resource name in paths, and the key of the kind's array in the state file.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Secret => "secrets",
            Kind::EndpointSlice => "endpointslices",
            Kind::ReplicaSet => "replicasets",
            Kind::ServiceL2Status => "servicel2statuses",
            Kind::ServiceBGPStatus => "servicebgpstatuses",
            Kind::L2Advertisement => "l2advertisements",
            Kind::BGPAdvertisement => "bgpadvertisements",
            Kind::IPAddressPool => "ipaddresspools",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::ReplicaSet => &["rs"],
            _ => &[],
        }
    }

    /// `kubectl get all` lists the kinds in category `all`.
    pub(super) fn categories(self) -> &'static [&'static str] {
        match self {
            Kind::Pod | Kind::Service | Kind::ReplicaSet => &["all"],
            _ => &[],
        }
    }

    /// The CRD API that must be installed for the kind to be served; `None` for built-in kinds.
    pub fn crd_api(self) -> Option<&'static str> {
        (self.group() == "metallb.io").then_some(METALLB_API)
    }

    /// The name of its CRD (`servicel2statuses.metallb.io`); `None` for built-in kinds.
    pub fn crd_name(self) -> Option<String> {
        self.crd_api().map(|_| format!("{}.{}", self.plural(), self.group()))
    }

    /// The collection in every namespace, e.g. `/api/v1/pods`.
    pub fn path(self) -> String {
        match self.group() {
            "" => format!("/api/v1/{}", self.plural()),
            _ => format!("/apis/{}/{}", self.api_version(), self.plural()),
        }
    }

    /// The key of its array in the state file.
    pub fn state_key(self) -> &'static str {
        self.plural()
    }

    /// What `fieldSelector` may name (the real server's field label conversions).
    pub(super) fn selectable_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"],
            Kind::Secret => &["metadata.name", "metadata.namespace", "type"],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }

    pub(super) fn find(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }
}
