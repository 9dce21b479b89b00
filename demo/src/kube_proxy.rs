//! The Service rules kube-proxy (iptables mode) would install on each node, as `iptables-restore`
//! input. Pure: the tests read the text.
//!
//! The structure follows kube-proxy's `pkg/proxy/iptables/proxier.go`:
//! * `KUBE-SERVICES` (from PREROUTING and OUTPUT) matches each ClusterIP and the LoadBalancer IP;
//! * `KUBE-SVC-<id>` picks one endpoint per connection with `-m statistic --mode random
//!   --probability 1/(n-i)` rules (the last unconditional), so every endpoint is equally likely;
//! * `KUBE-SEP-<id>-<n>` DNATs to one endpoint; with `sessionAffinity: ClientIP`, `-m recent --set`
//!   records the client there and `KUBE-SVC` first sends a client seen within `timeoutSeconds`
//!   (10800) back to the same endpoint (`--rcheck --reap`);
//! * `KUBE-NODEPORTS` (the last rule of `KUBE-SERVICES`, for the node's own addresses) sends the
//!   LoadBalancer Service's node port to its `KUBE-EXT` chain, as for the LoadBalancer IP;
//! * `KUBE-EXT-<id>` handles external (LoadBalancer) traffic: with `externalTrafficPolicy: Cluster`
//!   it marks the packet for masquerade and goes to `KUBE-SVC` (any endpoint, on any node); with
//!   `Local` it goes to `KUBE-SVL-<id>` (this node's endpoints only, client address kept), or drops
//!   when the node has none;
//! * `KUBE-POSTROUTING` masquerades marked packets (source NAT to the outgoing interface's address),
//!   so the reply comes back through the entry node.
//!
//! Chain names are readable (`KUBE-SVC-WORDPRESS`) rather than kube-proxy's hashes; iptables
//! allows 28 characters.

use std::fmt::Write;

use crate::plan::{NodePlan, Plan, PodPlan};
use crate::scenario::{SessionAffinity, TrafficPolicy};

/// kube-proxy's masquerade mark (`--iptables-masquerade-bit` 14).
const MASQ_MARK: &str = "0x4000/0x4000";
/// kube-proxy's drop mark (bit 15).
const DROP_MARK: &str = "0x8000/0x8000";
/// `service.spec.sessionAffinityConfig.clientIP.timeoutSeconds` default.
pub const AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// The id in a workload's chain names: up to 12 characters, upper case.
pub fn chain_id(workload: &str) -> String {
    workload.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_ascii_uppercase()
}

/// kube-proxy prints probabilities with 10 decimals.
fn probability(endpoints_left: usize) -> String {
    format!("{:.10}", 1.0 / endpoints_left as f64)
}

/// The nat and filter tables for `node`, as `iptables-restore` reads them.
pub fn rules(plan: &Plan, node: &NodePlan) -> String {
    // One piece: the nat and filter tables are written in the order iptables-restore reads them, chains declared
    // before the rules that jump to them.
    let mut nat = String::new();
    let mut chains: Vec<String> =
        ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-MARK-DROP"]
            .map(String::from)
            .to_vec();
    let mut node_ports = String::new();
    let mut body = String::new();
    let _ = writeln!(body, "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    let _ = writeln!(body, "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    let _ = writeln!(body, "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING");
    let _ = writeln!(body, "-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}");
    let _ = writeln!(body, "-A KUBE-MARK-DROP -j MARK --set-xmark {DROP_MARK}");
    let _ = writeln!(body, "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN");
    let _ = writeln!(body, "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000");
    let _ = writeln!(body, "-A KUBE-POSTROUTING -j MASQUERADE --random-fully");

    let affinity = plan.scenario.service.session_affinity == SessionAffinity::ClientIp;
    for service in &plan.services {
        let id = chain_id(&service.workload);
        let endpoints: Vec<&PodPlan> = plan.pods_of(&service.workload).collect();
        let svc = format!("KUBE-SVC-{id}");
        let name = format!("{}/{}", service.namespace, service.workload);
        chains.push(svc.clone());
        let _ = writeln!(
            body,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {} -j {svc}",
            service.cluster_ip, service.port
        );
        let sep_names: Vec<String> = (0..endpoints.len()).map(|n| format!("KUBE-SEP-{id}-{n}")).collect();
        let is_served = service.load_balancer;
        let with_affinity = is_served && affinity;
        for (pod, sep) in endpoints.iter().zip(&sep_names) {
            chains.push(sep.clone());
            // Hairpin: a pod reaching itself through the Service must see another source address.
            let _ = writeln!(body, "-A {sep} -s {}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ", pod.address);
            let recent = if with_affinity {
                format!(" -m recent --set --name {sep} --mask 255.255.255.255 --rsource")
            } else {
                String::new()
            };
            let _ = writeln!(
                body,
                "-A {sep} -p tcp -m comment --comment \"{name}\"{recent} -m tcp -j DNAT --to-destination {}:{}",
                pod.address, pod.port
            );
        }
        let all: Vec<(&PodPlan, &String)> = endpoints.iter().copied().zip(&sep_names).collect();
        balance(&mut body, &svc, &name, &all, with_affinity);

        if is_served {
            let ext = format!("KUBE-EXT-{id}");
            chains.push(ext.clone());
            let _ = writeln!(
                body,
                "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{name} loadbalancer IP\" -m tcp --dport {} -j {ext}",
                plan.load_balancer_ip, service.port
            );
            if let Some(node_port) = service.node_port {
                let _ = writeln!(
                    node_ports,
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{name}\" -m tcp --dport {node_port} -j {ext}"
                );
            }
            match plan.scenario.service.external_traffic_policy {
                TrafficPolicy::Cluster => {
                    let _ = writeln!(
                        body,
                        "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"
                    );
                    let _ = writeln!(body, "-A {ext} -j {svc}");
                }
                TrafficPolicy::Local => {
                    let local: Vec<(&PodPlan, &String)> =
                        all.iter().copied().filter(|(pod, _)| pod.node == node.name).collect();
                    if local.is_empty() {
                        let _ = writeln!(
                            body,
                            "-A {ext} -m comment --comment \"{name} has no local endpoints\" -j KUBE-MARK-DROP"
                        );
                    } else {
                        let svl = format!("KUBE-SVL-{id}");
                        chains.push(svl.clone());
                        let _ = writeln!(body, "-A {ext} -j {svl}");
                        balance(&mut body, &svl, &name, &local, with_affinity);
                    }
                }
            }
        }
    }
    let _ = writeln!(
        body,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    body.push_str(&node_ports);
    nat.push_str("*nat\n");
    for chain in &chains {
        let _ = writeln!(nat, ":{chain} - [0:0]");
    }
    nat.push_str(&body);
    nat.push_str("COMMIT\n");
    nat.push_str("*filter\n:KUBE-FIREWALL - [0:0]\n");
    let _ = writeln!(nat, "-A INPUT -j KUBE-FIREWALL");
    let _ = writeln!(nat, "-A FORWARD -j KUBE-FIREWALL");
    let _ = writeln!(
        nat,
        "-A KUBE-FIREWALL -m mark --mark {DROP_MARK} -m comment --comment \"kubernetes firewall for dropping marked packets\" -j DROP"
    );
    nat.push_str("COMMIT\n");
    nat
}

/// Affinity checks first (a client seen recently goes back to its endpoint), then one random rule
/// per endpoint: the i-th of n matches with probability 1/(n-i), which makes each endpoint equally
/// likely overall.
fn balance(body: &mut String, chain: &str, name: &str, endpoints: &[(&PodPlan, &String)], affinity: bool) {
    if affinity {
        for (_, sep) in endpoints {
            let _ = writeln!(
                body,
                "-A {chain} -m comment --comment \"{name}\" -m recent --rcheck --seconds {AFFINITY_TIMEOUT_SECONDS} --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}"
            );
        }
    }
    let n = endpoints.len();
    for (i, (pod, sep)) in endpoints.iter().enumerate() {
        let comment = format!("-m comment --comment \"{name} -> {}:{}\"", pod.address, pod.port);
        if i + 1 < n {
            let _ = writeln!(
                body,
                "-A {chain} {comment} -m statistic --mode random --probability {} -j {sep}",
                probability(n - i)
            );
        } else {
            let _ = writeln!(body, "-A {chain} {comment} -j {sep}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn plan(name: &str) -> Plan {
        Plan::new(Scenario::shipped(name).unwrap(), 7)
    }

    fn lines_of<'a>(rules: &'a str, chain: &str) -> Vec<&'a str> {
        let prefix = format!("-A {chain} ");
        rules.lines().filter(|l| l.starts_with(&prefix)).collect()
    }

    #[test]
    fn three_endpoints_are_picked_with_equal_chances() {
        let plan = plan("l2-ingress");
        let rules = rules(&plan, &plan.nodes[0]);
        let svc = lines_of(&rules, "KUBE-SVC-WORDPRESS");
        assert_eq!(svc.len(), 3, "{svc:#?}");
        assert!(svc[0].contains("--probability 0.3333333333") && svc[0].ends_with("-j KUBE-SEP-WORDPRESS-0"));
        assert!(svc[1].contains("--probability 0.5000000000") && svc[1].ends_with("-j KUBE-SEP-WORDPRESS-1"));
        assert!(!svc[2].contains("statistic") && svc[2].ends_with("-j KUBE-SEP-WORDPRESS-2"));
        let sep = lines_of(&rules, "KUBE-SEP-WORDPRESS-1");
        let pod = plan.endpoints()[1];
        assert!(sep[1].ends_with(&format!("DNAT --to-destination {}:80", pod.address)), "{sep:?}");
    }

    #[test]
    fn cluster_policy_masquerades_external_traffic_on_every_node() {
        let plan = plan("l2-ingress");
        for node in &plan.nodes {
            let rules = rules(&plan, node);
            let ext = lines_of(&rules, "KUBE-EXT-WORDPRESS");
            assert!(ext[0].ends_with("-j KUBE-MARK-MASQ") && ext[1] == "-A KUBE-EXT-WORDPRESS -j KUBE-SVC-WORDPRESS");
            assert!(rules.contains("-d 198.18.0.100/32 -p tcp"), "the LoadBalancer IP is matched");
            assert!(rules.contains("-A KUBE-POSTROUTING -j MASQUERADE"));
        }
    }

    #[test]
    fn the_node_port_leads_where_the_load_balancer_ip_does_on_every_node() {
        let plan = plan("l2-ingress");
        let node_port = plan.load_balancer().unwrap().node_port.unwrap();
        for node in &plan.nodes {
            let rules = rules(&plan, node);
            let services = lines_of(&rules, "KUBE-SERVICES");
            assert!(
                services.last().unwrap().ends_with("--dst-type LOCAL -j KUBE-NODEPORTS"),
                "the last rule: {services:?}"
            );
            assert_eq!(
                lines_of(&rules, "KUBE-NODEPORTS"),
                [format!(
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"wordpress/wordpress\" -m tcp --dport {node_port} -j KUBE-EXT-WORDPRESS"
                )]
            );
        }
    }

    #[test]
    fn local_policy_serves_only_local_endpoints_and_drops_elsewhere() {
        let plan = plan("local-policy");
        let master_02 = plan.node("master-02").unwrap();
        let rules_02 = rules(&plan, master_02);
        let ext = lines_of(&rules_02, "KUBE-EXT-WORDPRESS");
        assert_eq!(ext, ["-A KUBE-EXT-WORDPRESS -j KUBE-SVL-WORDPRESS"]);
        let svl = lines_of(&rules_02, "KUBE-SVL-WORDPRESS");
        assert_eq!(svl.len(), 1, "one local endpoint: {svl:?}");
        assert!(svl[0].ends_with("-j KUBE-SEP-WORDPRESS-0"), "master-02 holds replica 0");
        assert!(!rules_02.contains("-A KUBE-EXT-WORDPRESS -j KUBE-MARK-MASQ"), "Local keeps the client address");
        let master_01 = plan.node("master-01").unwrap();
        let ext = lines_of(&rules(&plan, master_01), "KUBE-EXT-WORDPRESS").join("\n");
        assert!(ext.contains("KUBE-MARK-DROP"), "{ext}");
    }

    #[test]
    fn client_ip_affinity_checks_recent_clients_first() {
        let text =
            crate::scenario::SHIPPED[0].1.replace("session_affinity = \"None\"", "session_affinity = \"ClientIP\"");
        let plan = Plan::new(Scenario::parse(&text).unwrap(), 7);
        let rules = rules(&plan, &plan.nodes[1]);
        let svc = lines_of(&rules, "KUBE-SVC-WORDPRESS");
        assert_eq!(svc.len(), 6);
        for (i, line) in svc[..3].iter().enumerate() {
            assert!(
                line.contains("--rcheck --seconds 10800 --reap")
                    && line.ends_with(&format!("-j KUBE-SEP-WORDPRESS-{i}")),
                "{line}"
            );
        }
        let sep = lines_of(&rules, "KUBE-SEP-WORDPRESS-0");
        assert!(sep[1].contains("-m recent --set --name KUBE-SEP-WORDPRESS-0"), "{sep:?}");
        let db = lines_of(&rules, "KUBE-SVC-MYSQL");
        assert!(db.iter().all(|l| !l.contains("recent")), "affinity applies to the served workload only");
    }

    #[test]
    fn behind_an_in_cluster_proxy_the_load_balancer_ip_leads_to_the_proxy_and_wordpress_has_a_cluster_ip() {
        let plan = plan("in-cluster-proxy");
        let relay = plan.scenario.relay().unwrap();
        let id = chain_id(&relay.name);
        let rules = rules(&plan, &plan.nodes[0]);
        let lb = format!("-d {}/32 -p tcp", plan.load_balancer_ip);
        let to_lb: Vec<&str> = lines_of(&rules, "KUBE-SERVICES").into_iter().filter(|l| l.contains(&lb)).collect();
        assert_eq!(to_lb.len(), 1);
        assert!(to_lb[0].ends_with(&format!("-j KUBE-EXT-{id}")), "{to_lb:?}");
        let wordpress = plan.service("wordpress").unwrap();
        assert!(!wordpress.load_balancer);
        assert!(rules.contains(&format!("-d {}/32 -p tcp", wordpress.cluster_ip)));
        assert!(!rules.contains(":KUBE-EXT-WORDPRESS "), "WordPress is reached through its ClusterIP only");
    }

    #[test]
    fn the_database_gets_a_cluster_ip_and_every_chain_is_declared() {
        let plan = plan("balanced");
        let rules = rules(&plan, &plan.nodes[3]);
        let mysql = plan.service("mysql").unwrap();
        assert!(rules.contains(&format!("-d {}/32 -p tcp", mysql.cluster_ip)));
        for (name, _) in crate::scenario::SHIPPED {
            let plan = self::plan(name);
            for node in &plan.nodes {
                let rules = super::rules(&plan, node);
                for line in rules.lines().filter(|l| l.starts_with("-A ")) {
                    let chain = line.split_whitespace().nth(1).unwrap();
                    let builtin = ["PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "FORWARD"].contains(&chain);
                    assert!(builtin || rules.contains(&format!(":{chain} - [0:0]")), "{name}: {chain} is not declared");
                    assert!(chain.len() <= 28, "{chain}");
                }
                assert_eq!(rules.matches("COMMIT").count(), 2);
            }
        }
    }
}
