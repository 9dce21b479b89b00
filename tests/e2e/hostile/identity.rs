//! Identity with the real binaries: an impostor that says Hello as another node without that
//! node's credential is refused and the honest agent's data stays complete; a stolen
//! service-account token of one node (reviewed by the Kubernetes API double) cannot write
//! another; a read token cannot open a load-test window, a control token can; and an agent's
//! projected token, rotated in place as the kubelet does, is read again at the next connect.

use std::path::Path;
use std::sync::Arc;

use bakery_lab::kube_double::{ClusterState, KubeDouble};
use serde_json::{Value, json};

use super::procs::*;

const READ: &str = "hostile-read-token";
const CONTROL: &str = "hostile-control-token";

/// Node tokens for `victim` and `attacker`, a read and a control token; each agent's token in a
/// file of its own. The collector's credential flags.
fn node_token_setup(work: &Path) -> Vec<String> {
    write(work, "victim-token", "victim-secret\n");
    write(work, "attacker-token", "attacker-secret\n");
    let nodes = write(work, "node-tokens", "# NODE TOKEN\nvictim victim-secret\nattacker attacker-secret\n");
    let read = write(work, "read-token", &format!("{READ}\n"));
    let control = write(work, "control-token", &format!("{CONTROL}\n"));
    vec![
        format!("--node-token-file={}", nodes.display()),
        format!("--read-token-file={}", read.display()),
        format!("--control-token-file={}", control.display()),
        "--metrics-require-token".into(),
    ]
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

const WRONG_NODE: &str = "bakery_collector_auth_refusals_total{cause=\"wrong_node\"}";

#[test]
fn an_impostor_without_the_nodes_credential_is_refused_and_the_victims_data_is_intact() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let flags = node_token_setup(work);
    let mut collector = Collector::start(work, &args(&flags));
    let mut victim = Agent::with_token(work, "victim", &collector.url(), &work.join("victim-token"));
    wait_until("the victim to stream", WAIT, || victim.streams_opened() >= 1).unwrap();

    // The attacker has its own node's token (every node has one) and says Hello as the victim,
    // again and again (the agent reconnects with backoff).
    let mut impostor = Agent::with_token(work, "victim", &collector.url(), &work.join("attacker-token"));
    wait_until("three refusals of the impostor", WAIT, || collector.metric(READ, WRONG_NODE) >= 3.0).unwrap();
    let said = impostor.log();
    assert!(said.contains("PermissionDenied") && said.contains("proves node") && said.contains("attacker"), "{said}");
    assert_eq!(impostor.streams_opened(), 0, "the impostor never got a Welcome:\n{said}");
    impostor.kill9();

    // /metrics itself wants a read token: not none, not an agent's.
    assert_eq!(collector.scrape(None).0, 401);
    assert_eq!(collector.scrape(Some("attacker-secret")).0, 403);

    let exit = victim.stop();
    assert_eq!((exit.unacknowledged, exit.acked_seq), (0, exit.last_seq), "{exit:?}");
    assert_eq!(victim.streams_opened(), 1, "the victim's stream was never replaced:\n{}", victim.log());
    assert!(!collector.log().contains("a newer stream replaces"), "{}", collector.log());
    collector.stop();
    let store = collector.inspect();
    assert_complete(&store, "victim", exit.last_seq);
    assert_eq!(store.len(), 1, "nothing else was stored: {store:?}");
}

#[test]
fn a_read_token_cannot_open_a_window_and_a_control_token_can() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let flags = node_token_setup(work);
    let mut collector = Collector::start(work, &args(&flags));
    let url = collector.url();
    // `bakery_window_active{...} 1` is exported while a window is open, and only then.
    let window_open =
        |collector: &Collector| collector.scrape(Some(READ)).1.lines().any(|l| l.starts_with("bakery_window_active{"));

    let refused = bakery_top(&url, &work.join("read-token"), &["window", "start", "--name", "by-a-reader"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a read token opened a window: {stderr}");
    assert!(stderr.contains("needs the control role"), "the refusal names the role: {stderr}");
    assert!(!window_open(&collector), "no window is open");

    let started = bakery_top(&url, &work.join("control-token"), &["window", "start", "--name", "by-an-operator"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    wait_until("the window to be exported as open", WAIT, || window_open(&collector)).unwrap();
    let stopped = bakery_top(&url, &work.join("control-token"), &["window", "stop"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    collector.stop();
}

const AGENT_ACCOUNT: &str = "system:serviceaccount:bakery:bakery-agent";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// A projected token of the agents' service account for audience bakery, bound to `pod_uid`
/// (and, as Kubernetes >= 1.30 does, to `node`).
fn issued(token: &str, pod_uid: &str, node: Option<&str>) -> Value {
    let mut extra = json!({POD_UID: [pod_uid]});
    if let Some(node) = node {
        extra[NODE_NAME] = json!([node]);
    }
    json!({"token": token, "audiences": ["bakery"], "user": {"username": AGENT_ACCOUNT, "extra": extra}})
}

fn agent_pod(uid: &str, node: &str) -> Value {
    json!({"metadata": {"name": format!("bakery-agent-{node}"), "namespace": "bakery", "uid": uid},
           "spec": {"nodeName": node, "containers": []}})
}

/// The Kubernetes API double on its own runtime, and a kubeconfig for it in `work`.
fn api_double(work: &Path, state: &ClusterState) -> (tokio::runtime::Runtime, Arc<KubeDouble>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let double = Arc::new(runtime.block_on(KubeDouble::start("127.0.0.1:0".parse().unwrap())).unwrap());
    let problems = double.set_state(state);
    assert!(problems.is_empty(), "{problems:?}");
    write(work, "kubeconfig", &double.kubeconfig());
    (runtime, double)
}

fn service_account_flags(work: &Path) -> Vec<String> {
    let read = write(work, "read-token", &format!("{READ}\n"));
    vec![
        format!("--kubeconfig={}", work.join("kubeconfig").display()),
        "--agent-service-account=bakery/bakery-agent".into(),
        format!("--read-token-file={}", read.display()),
        "--metrics-require-token".into(),
    ]
}

#[test]
fn a_stolen_service_account_token_of_one_node_cannot_write_another() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let state = ClusterState {
        nodes: vec![json!({"metadata": {"name": "pi-a"}}), json!({"metadata": {"name": "pi-b"}})],
        pods: vec![agent_pod("uid-a", "pi-a"), agent_pod("uid-b", "pi-b")],
        // pi-b's review names only its pod: the collector finds the node in its pod watch
        tokenreviews: vec![issued("token-of-pi-a", "uid-a", Some("pi-a")), issued("token-of-pi-b", "uid-b", None)],
        ..ClusterState::default()
    };
    let (_runtime, double) = api_double(work, &state);
    let mut collector = Collector::start(work, &args(&service_account_flags(work)));
    write(work, "pi-a-token", "token-of-pi-a");
    write(work, "pi-b-token", "token-of-pi-b");
    let mut pi_a = Agent::with_token(work, "pi-a", &collector.url(), &work.join("pi-a-token"));
    let mut pi_b = Agent::with_token(work, "pi-b", &collector.url(), &work.join("pi-b-token"));
    wait_until("both agents to stream", WAIT, || pi_a.streams_opened() >= 1 && pi_b.streams_opened() >= 1).unwrap();

    // pi-a's token, stolen from pi-a's filesystem, used to write pi-b.
    let mut thief = Agent::with_token(work, "pi-b", &collector.url(), &work.join("pi-a-token"));
    wait_until("two refusals of the thief", WAIT, || collector.metric(READ, WRONG_NODE) >= 2.0).unwrap();
    let said = thief.log();
    assert!(said.contains("PermissionDenied") && said.contains("proves node") && said.contains("pi-a"), "{said}");
    assert_eq!(thief.streams_opened(), 0, "{said}");
    thief.kill9();
    assert!(double.token_reviews_served() >= 2, "the tokens were reviewed by the API");

    let (exit_a, exit_b) = (pi_a.stop(), pi_b.stop());
    for exit in [&exit_a, &exit_b] {
        assert_eq!((exit.unacknowledged, exit.acked_seq), (0, exit.last_seq), "{exit:?}");
    }
    assert_eq!(pi_b.streams_opened(), 1, "pi-b's stream was never replaced:\n{}", pi_b.log());
    collector.stop();
    let store = collector.inspect();
    assert_complete(&store, "pi-a", exit_a.last_seq);
    assert_complete(&store, "pi-b", exit_b.last_seq);
}

/// Writes `token` into `dir` the way the kubelet updates a projected volume: the files live in a
/// timestamped directory, `..data` points at it and `token` at `..data/token`; an update writes a
/// new directory, swaps `..data` with a rename, and removes the old one.
fn kubelet_projected_write(dir: &Path, generation: u32, token: &str) {
    let target = format!("..2026_12_07_00_00_0{generation}.000000000");
    std::fs::create_dir_all(dir.join(&target)).unwrap();
    write(&dir.join(&target), "token", token);
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&target, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("token").exists() {
        std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_projected_token_rotated_in_place_by_the_kubelet_is_read_again_at_the_next_connect() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let first = ClusterState {
        pods: vec![agent_pod("uid-a", "pi-a")],
        tokenreviews: vec![issued("first-token", "uid-a", Some("pi-a"))],
        ..ClusterState::default()
    };
    let (_runtime, double) = api_double(work, &first);
    let mut collector = Collector::start(work, &args(&service_account_flags(work)));
    let projected = work.join("projected");
    std::fs::create_dir_all(&projected).unwrap();
    kubelet_projected_write(&projected, 1, "first-token");
    let mut agent = Agent::with_token(work, "pi-a", &collector.url(), &projected.join("token"));
    wait_until("the agent to stream", WAIT, || agent.streams_opened() >= 1).unwrap();

    // The kubelet rotates the token; the old one stops being valid (expired, or the pod's
    // binding gone), so the next stream works only if the agent read the file again.
    kubelet_projected_write(&projected, 2, "second-token");
    let second = ClusterState { tokenreviews: vec![issued("second-token", "uid-a", Some("pi-a"))], ..first };
    assert!(double.set_state(&second).is_empty());
    collector.stop();
    collector.spawn();
    wait_until("the agent to stream again", WAIT, || agent.streams_opened() >= 2).unwrap();
    let log = collector.log();
    assert!(
        log.lines().any(|l| l.contains("agent connected") && l.contains("credential=service-account-token")),
        "{log}"
    );
    let exit = agent.stop();
    assert_eq!((exit.unacknowledged, exit.acked_seq), (0, exit.last_seq), "{exit:?}");
    collector.stop();
    assert_complete(&collector.inspect(), "pi-a", exit.last_seq);
}
