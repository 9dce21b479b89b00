//! Principals and the decisions made on them, pure: which role each call needs, and which node a
//! stream may write.

use std::fmt;

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `Ingest.Stream`: send samples, for the node the credential proves.
    Ingest,
    /// The Query reads: Nodes, History, Pods, Live, Alerts, Windows, Report (and `/metrics`
    /// when it asks for a token).
    Read,
    /// SetInterval, StartWindow, StopWindow: changes what the agents and the analysis do.
    /// Implies read.
    Control,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Control => "control",
        }
    }

    /// The credential that grants the role, for refusal messages.
    fn granted_by(self) -> &'static str {
        match self {
            Role::Ingest => {
                "an agent credential (a service-account token, a node token, a client certificate or the shared token)"
            }
            Role::Read => "a read token (--read-token-file) or a control token",
            Role::Control => "a control token (--control-token-file)",
        }
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    ingest: bool,
    read: bool,
    control: bool,
}

impl Roles {
    pub const NONE: Roles = Roles { ingest: false, read: false, control: false };
    pub const INGEST: Roles = Roles { ingest: true, read: false, control: false };
    pub const READ: Roles = Roles { ingest: false, read: true, control: false };
    pub const CONTROL: Roles = Roles { ingest: false, read: true, control: true };
    pub const ALL: Roles = Roles { ingest: true, read: true, control: true };

    /// True when the set grants `role` (control implies read).
    pub fn has(self, role: Role) -> bool {
        match role {
            Role::Ingest => self.ingest,
            Role::Read => self.read || self.control,
            Role::Control => self.control,
        }
    }

    pub fn union(self, other: Roles) -> Roles {
        Roles {
            ingest: self.ingest || other.ingest,
            read: self.read || other.read,
            control: self.control || other.control,
        }
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> =
            [Role::Ingest, Role::Read, Role::Control].into_iter().filter(|r| self.has(*r)).map(Role::name).collect();
        if names.is_empty() { f.write_str("no role") } else { f.write_str(&names.join(", ")) }
    }
}

/// The kind of credential a caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// `--insecure-no-auth`: no credential at all.
    Insecure,
    /// A token of `--token-file`: shared by every agent, so it does not bind a node.
    SharedToken,
    /// A token of `--node-token-file`, bound to one node.
    NodeToken,
    /// A token of `--read-token-file`.
    ReadToken,
    /// A token of `--control-token-file`.
    ControlToken,
    /// A client certificate verified against `--tls-client-ca`.
    ClientCertificate,
    /// A Kubernetes service-account token of `--agent-service-account`, checked with a
    /// TokenReview.
    ServiceAccount,
}

impl CredentialKind {
    /// How people know it (for messages).
    pub fn describe(self) -> &'static str {
        match self {
            CredentialKind::Insecure => "no credential (--insecure-no-auth)",
            CredentialKind::SharedToken => "the shared token (--token-file), which does not bind a node",
            CredentialKind::NodeToken => "a node token (--node-token-file)",
            CredentialKind::ReadToken => "a read token (--read-token-file)",
            CredentialKind::ControlToken => "a control token (--control-token-file)",
            CredentialKind::ClientCertificate => "a client certificate (--tls-client-ca)",
            CredentialKind::ServiceAccount => "the agents' service-account token (--agent-service-account)",
        }
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::Insecure => "insecure-no-auth",
            CredentialKind::SharedToken => "shared-token",
            CredentialKind::NodeToken => "node-token",
            CredentialKind::ReadToken => "read-token",
            CredentialKind::ControlToken => "control-token",
            CredentialKind::ClientCertificate => "client-certificate",
            CredentialKind::ServiceAccount => "service-account-token",
        }
    }
}

/// Which node the streams of a principal may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeBinding {
    /// None: the credential does not grant ingest.
    NoNode,
    /// Any node: the shared token and `--insecure-no-auth`, which prove no identity.
    AnyNode,
    /// Only this node, which the credential proves.
    Node(String),
}

/// Who makes a call: the credential, the roles it grants and, for ingest, the node it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub credential: CredentialKind,
    pub roles: Roles,
    pub node: NodeBinding,
}

/// A call the collector serves, each needing one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    IngestStream,
    Nodes,
    History,
    Pods,
    Live,
    Alerts,
    Windows,
    Report,
    SetInterval,
    StartWindow,
    StopWindow,
    /// `GET /metrics` with `--metrics-require-token`.
    Metrics,
}

impl Call {
    pub const ALL: [Call; 12] = [
        Call::IngestStream,
        Call::Nodes,
        Call::History,
        Call::Pods,
        Call::Live,
        Call::Alerts,
        Call::Windows,
        Call::Report,
        Call::SetInterval,
        Call::StartWindow,
        Call::StopWindow,
        Call::Metrics,
    ];

    /// The gRPC method (or HTTP request) as logs and messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Call::IngestStream => "Ingest.Stream",
            Call::Nodes => "Query.Nodes",
            Call::History => "Query.History",
            Call::Pods => "Query.Pods",
            Call::Live => "Query.Live",
            Call::Alerts => "Query.Alerts",
            Call::Windows => "Query.Windows",
            Call::Report => "Query.Report",
            Call::SetInterval => "Query.SetInterval",
            Call::StartWindow => "Query.StartWindow",
            Call::StopWindow => "Query.StopWindow",
            Call::Metrics => "GET /metrics",
        }
    }

    /// The role the call needs.
    pub fn role(self) -> Role {
        match self {
            Call::IngestStream => Role::Ingest,
            Call::Nodes
            | Call::History
            | Call::Pods
            | Call::Live
            | Call::Alerts
            | Call::Windows
            | Call::Report
            | Call::Metrics => Role::Read,
            Call::SetInterval | Call::StartWindow | Call::StopWindow => Role::Control,
        }
    }
}

/// Why an authenticated principal may not do something: `PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The call needs a role the credential does not grant.
    MissingRole { call: Call, role: Role, credential: CredentialKind, roles: Roles },
    /// A stream asked to write another node than the one the credential proves.
    WrongNode { credential: CredentialKind, proven: String, asked: String },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::MissingRole { call, role, credential, roles } => write!(
                f,
                "{} needs the {} role, which {} does not grant (it grants {roles}); use {}",
                call.name(),
                role.name(),
                credential.describe(),
                role.granted_by()
            ),
            Denied::WrongNode { credential, proven, asked } => write!(
                f,
                "this credential ({}) proves node {proven:?}: it may not stream as node {asked:?}",
                credential.describe()
            ),
        }
    }
}

impl Principal {
    /// Everything, for `--insecure-no-auth`.
    pub fn insecure() -> Principal {
        Principal { credential: CredentialKind::Insecure, roles: Roles::ALL, node: NodeBinding::AnyNode }
    }

    /// Ok when the principal may make `call`.
    pub fn authorize(&self, call: Call) -> Result<(), Denied> {
        let role = call.role();
        if self.roles.has(role) {
            Ok(())
        } else {
            Err(Denied::MissingRole { call, role, credential: self.credential, roles: self.roles })
        }
    }

    /// Ok when a stream of this principal may write `node`: say Hello as it, or replace the
    /// node's connected stream.
    pub fn may_write(&self, node: &str) -> Result<(), Denied> {
        self.authorize(Call::IngestStream)?;
        match &self.node {
            NodeBinding::AnyNode => Ok(()),
            NodeBinding::Node(proven) if proven == node => Ok(()),
            NodeBinding::Node(proven) => {
                Err(Denied::WrongNode { credential: self.credential, proven: proven.clone(), asked: node.to_string() })
            }
            // A principal without a node has no ingest role, refused above; kept for safety.
            NodeBinding::NoNode => Err(Denied::MissingRole {
                call: Call::IngestStream,
                role: Role::Ingest,
                credential: self.credential,
                roles: self.roles,
            }),
        }
    }

    /// One principal for a token listed in several files: the union of their roles; a binding
    /// to any node wins over a binding to one.
    pub fn merge(self, other: Principal) -> Principal {
        let node = match (self.node, other.node) {
            (NodeBinding::AnyNode, _) | (_, NodeBinding::AnyNode) => NodeBinding::AnyNode,
            (NodeBinding::Node(node), _) | (_, NodeBinding::Node(node)) => NodeBinding::Node(node),
            (NodeBinding::NoNode, NodeBinding::NoNode) => NodeBinding::NoNode,
        };
        let credential = if self.roles.has(Role::Ingest) || !other.roles.has(Role::Ingest) {
            self.credential
        } else {
            other.credential
        };
        Principal { credential, roles: self.roles.union(other.roles), node }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(credential: CredentialKind, roles: Roles, node: NodeBinding) -> Principal {
        Principal { credential, roles, node }
    }

    #[test]
    fn each_call_needs_its_role_and_control_implies_read() {
        use Call::*;
        let read = principal(CredentialKind::ReadToken, Roles::READ, NodeBinding::NoNode);
        let control = principal(CredentialKind::ControlToken, Roles::CONTROL, NodeBinding::NoNode);
        let agent = principal(CredentialKind::NodeToken, Roles::INGEST, NodeBinding::Node("pi-1".into()));
        let insecure = Principal::insecure();
        // (call, read token, control token, node token, insecure)
        let table = [
            (IngestStream, false, false, true, true),
            (Nodes, true, true, false, true),
            (History, true, true, false, true),
            (Pods, true, true, false, true),
            (Live, true, true, false, true),
            (Alerts, true, true, false, true),
            (Windows, true, true, false, true),
            (Report, true, true, false, true),
            (Metrics, true, true, false, true),
            (SetInterval, false, true, false, true),
            (StartWindow, false, true, false, true),
            (StopWindow, false, true, false, true),
        ];
        assert_eq!(table.len(), Call::ALL.len(), "every call is in the table");
        for (call, by_read, by_control, by_agent, by_insecure) in table {
            assert_eq!(read.authorize(call).is_ok(), by_read, "read token, {}", call.name());
            assert_eq!(control.authorize(call).is_ok(), by_control, "control token, {}", call.name());
            assert_eq!(agent.authorize(call).is_ok(), by_agent, "node token, {}", call.name());
            assert_eq!(insecure.authorize(call).is_ok(), by_insecure, "insecure, {}", call.name());
        }
    }

    #[test]
    fn a_refused_call_names_the_role_it_lacks_and_the_credential_that_has_it() {
        let read = principal(CredentialKind::ReadToken, Roles::READ, NodeBinding::NoNode);
        let denied = read.authorize(Call::StartWindow).unwrap_err().to_string();
        assert!(denied.contains("Query.StartWindow needs the control role"), "{denied}");
        assert!(denied.contains("a read token") && denied.contains("grants read"), "{denied}");
        assert!(denied.contains("--control-token-file"), "{denied}");
        let agent = principal(CredentialKind::ServiceAccount, Roles::INGEST, NodeBinding::Node("pi-1".into()));
        let denied = agent.authorize(Call::Nodes).unwrap_err().to_string();
        assert!(denied.contains("needs the read role") && denied.contains("grants ingest"), "{denied}");
    }

    #[test]
    fn a_stream_may_write_only_the_node_its_credential_proves() {
        let node = |name: &str| NodeBinding::Node(name.into());
        // (credential, roles, binding, node asked for, allowed)
        let table = [
            (CredentialKind::NodeToken, Roles::INGEST, node("victim"), "victim", true),
            // a stolen or misused token of node A cannot write node B
            (CredentialKind::NodeToken, Roles::INGEST, node("attacker"), "victim", false),
            (CredentialKind::ServiceAccount, Roles::INGEST, node("pi-1"), "pi-2", false),
            (CredentialKind::ClientCertificate, Roles::INGEST, node("pi-1"), "pi-1", true),
            // names are compared exactly
            (CredentialKind::ClientCertificate, Roles::INGEST, node("pi-1"), "PI-1", false),
            // the shared token and no-auth prove nothing, so they may write any node
            (CredentialKind::SharedToken, Roles::INGEST, NodeBinding::AnyNode, "victim", true),
            (CredentialKind::Insecure, Roles::ALL, NodeBinding::AnyNode, "victim", true),
            // people's tokens do not stream
            (CredentialKind::ReadToken, Roles::READ, NodeBinding::NoNode, "victim", false),
            (CredentialKind::ControlToken, Roles::CONTROL, NodeBinding::NoNode, "victim", false),
        ];
        for (credential, roles, binding, asked, allowed) in table {
            let who = principal(credential, roles, binding.clone());
            assert_eq!(who.may_write(asked).is_ok(), allowed, "{credential:?} bound to {binding:?} writing {asked}");
        }
        let denied = principal(CredentialKind::NodeToken, Roles::INGEST, node("attacker"))
            .may_write("victim")
            .unwrap_err()
            .to_string();
        assert!(denied.contains("proves node \"attacker\"") && denied.contains("as node \"victim\""), "{denied}");
    }

    #[test]
    fn a_token_in_several_files_gets_the_union() {
        let node = principal(CredentialKind::NodeToken, Roles::INGEST, NodeBinding::Node("pi-1".into()));
        let shared = principal(CredentialKind::SharedToken, Roles::INGEST, NodeBinding::AnyNode);
        let read = principal(CredentialKind::ReadToken, Roles::READ, NodeBinding::NoNode);
        let both = read.clone().merge(node.clone());
        assert_eq!(both.roles, Roles::INGEST.union(Roles::READ));
        assert_eq!(both.node, NodeBinding::Node("pi-1".into()));
        assert_eq!(both.credential, CredentialKind::NodeToken, "named by the credential that streams");
        assert_eq!(node.merge(shared).node, NodeBinding::AnyNode);
        assert_eq!(Roles::CONTROL.to_string(), "read, control");
        assert_eq!(Roles::NONE.to_string(), "no role");
    }
}
