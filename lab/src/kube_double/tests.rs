//! The double over HTTP: events with rising versions, watches with bookmarks and 410, namespaced
//! lists, single objects and selectors, CRDs installed one by one, tables, TokenReviews, filtered
//! watches, removed APIs, refused objects, forbidden resources and port-forward without an upgrade.

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn changes_become_added_modified_and_deleted_events_with_rising_versions() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let pod =
            |node: &str| json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"nodeName": node}});
        double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
        let after_first = double.shared.lock().events.len();
        double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
        assert_eq!(double.shared.lock().events.len(), after_first, "an unchanged state adds nothing");
        double.set_state(&ClusterState { pods: vec![pod("b")], ..ClusterState::default() });
        double.set_state(&ClusterState::default());
        let inner = double.shared.lock();
        let namespaces: Vec<&str> = inner
            .events
            .iter()
            .filter(|e| e.kind == Kind::Namespace && e.kind_of_change == "ADDED")
            .map(|e| e.object["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            namespaces,
            ["default", "kube-node-lease", "kube-public", "kube-system", "n"],
            "the pod's namespace exists"
        );
        let pod_events: Vec<&Event> = inner.events.iter().filter(|e| e.kind == Kind::Pod).collect();
        let changes: Vec<&str> = pod_events.iter().map(|e| e.kind_of_change).collect();
        assert_eq!(changes, ["ADDED", "MODIFIED", "DELETED"]);
        assert!(pod_events.windows(2).all(|w| w[0].rv < w[1].rv), "versions rise");
        assert!(inner.events.windows(2).all(|w| w[0].rv < w[1].rv), "versions rise");
        assert_eq!(pod_events[1].object["metadata"]["resourceVersion"], pod_events[1].rv.to_string());
        assert_eq!(pod_events[1].object["kind"], "Pod");
        let created = &pod_events[0].object["metadata"]["creationTimestamp"];
        assert!(created.as_str().is_some_and(|t| humantime::parse_rfc3339(t).is_ok()), "{created}");
        assert_eq!(&pod_events[1].object["metadata"]["creationTimestamp"], created, "kept across changes");
    });
}

/// Sends a raw HTTP/1.1 GET and returns what arrives until `done` holds or 5 s pass.
async fn get_until(addr: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
    request(addr, path, "application/json", done).await
}

async fn request(addr: SocketAddr, path: &str, accept: &str, done: impl Fn(&str) -> bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buffer = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&received)) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await.expect("in time").unwrap();
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// GET `path` (a complete, non-streaming answer): the status code and the JSON body.
async fn get_json(addr: SocketAddr, path: &str, accept: &str) -> (u16, Value) {
    let text = request(addr, path, accept, |_| false).await;
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap();
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    get_json(addr, path, "application/json").await
}

fn names(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect()
}

#[test]
fn a_watch_streams_events_then_bookmarks_and_an_old_version_gets_410() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let node = |name: &str| json!({"metadata": {"name": name}});
        double.set_state(&ClusterState { nodes: vec![node("pi-1")], ..ClusterState::default() });
        let seen = double.resource_version();
        double.set_state(&ClusterState { nodes: vec![node("pi-1"), node("pi-2")], ..ClusterState::default() });
        let addr = double.addr();
        let watch = format!("/api/v1/nodes?watch=true&resourceVersion={seen}&allowWatchBookmarks=true");
        let text = get_until(addr, &watch, |t| t.contains("BOOKMARK")).await;
        assert!(text.contains(r#""type":"ADDED""#) && text.contains(r#""name":"pi-2""#), "{text}");
        assert!(!text.contains(r#""name":"pi-1""#), "pi-1 is at version {seen}, already seen: {text}");
        assert!(text.contains(&format!(r#""resourceVersion":"{}""#, seen + 1)), "{text}");

        let text = get_until(addr, "/api/v1/nodes?watch=true", |t| t.contains("pi-1") && t.contains("pi-2")).await;
        assert!(
            text.contains(r#""type":"ADDED""#),
            "a watch without a version starts with the current objects: {text}"
        );

        double.expire_watches();
        let text = get_until(addr, &watch, |t| t.contains("ERROR")).await;
        assert!(text.contains(r#""code":410"#), "{text}");
        let (code, list) = get(addr, "/api/v1/nodes").await;
        let newest = json!((seen + 1).to_string());
        assert_eq!(
            (code, list["kind"].as_str(), &list["metadata"]["resourceVersion"]),
            (200, Some("NodeList"), &newest)
        );
    });
}

fn shop_state() -> ClusterState {
    let pod = |name: &str, ns: &str, app: &str, node: &str| json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "spec": {"nodeName": node}});
    ClusterState {
        nodes: vec![json!({"metadata": {"name": "pi-1"}})],
        pods: vec![
            pod("web-1", "shop", "web", "pi-1"),
            pod("web-2", "shop", "web", "pi-2"),
            pod("db-0", "data", "db", "pi-2"),
        ],
        services: vec![json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "LoadBalancer"}})],
        servicel2statuses: vec![json!({"metadata": {"name": "l2-x", "namespace": "metallb-system"},
                                       "status": {"node": "pi-1", "serviceName": "web", "serviceNamespace": "shop"}})],
        ..ClusterState::default()
    }
}

#[test]
fn namespaced_lists_single_objects_and_selectors_answer_as_a_real_server() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        double.set_state(&shop_state());
        let addr = double.addr();
        assert_eq!(names(&get(addr, "/api/v1/pods").await.1), ["db-0", "web-1", "web-2"]);
        assert_eq!(names(&get(addr, "/api/v1/namespaces/shop/pods").await.1), ["web-1", "web-2"]);
        assert_eq!(names(&get(addr, "/api/v1/pods?labelSelector=app%3Ddb").await.1), ["db-0"]);
        assert_eq!(names(&get(addr, "/api/v1/pods?labelSelector=app+in+%28web%29").await.1), ["web-1", "web-2"]);
        assert_eq!(names(&get(addr, "/api/v1/pods?fieldSelector=spec.nodeName%3Dpi-2").await.1), ["db-0", "web-2"]);
        assert_eq!(
            names(&get(addr, "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-2").await.1),
            ["web-2"]
        );
        let (code, status) = get(addr, "/api/v1/pods?fieldSelector=spec.restartPolicy%3DAlways").await;
        assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");

        let (code, svc) = get(addr, "/api/v1/namespaces/shop/services/web").await;
        assert_eq!(
            (code, svc["kind"].as_str(), svc["spec"]["type"].as_str()),
            (200, Some("Service"), Some("LoadBalancer"))
        );
        let (code, status) = get(addr, "/api/v1/namespaces/shop/services/nope").await;
        assert_eq!((code, status["message"].as_str()), (404, Some(r#"services "nope" not found"#)));
        assert_eq!(get(addr, "/api/v1/nodes/pi-1").await.0, 200);
        assert_eq!(get(addr, "/api/v1/namespaces/shop/nodes").await.0, 404, "nodes are not namespaced");

        // The state does not install MetalLB: its objects are ignored and its paths are 404.
        for path in [
            "/apis/metallb.io/v1beta1/servicel2statuses",
            "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses",
            "/apis/metallb.io/v1beta1",
            "/apis/metallb.io",
        ] {
            let (code, status) = get(addr, path).await;
            assert_eq!(
                (code, status["kind"].as_str(), status["reason"].as_str()),
                (404, Some("Status"), Some("NotFound")),
                "{path}"
            );
        }
        let groups = get(addr, "/apis").await.1;
        let group_names: Vec<&str> =
            groups["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(group_names, ["discovery.k8s.io", "apps", "authentication.k8s.io"]);

        let problems = double.set_state(&ClusterState { apis: vec![METALLB_API.into()], ..shop_state() });
        assert!(problems.is_empty(), "{problems:?}");
        let statuses = get(addr, "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses").await.1;
        assert_eq!((statuses["kind"].as_str(), names(&statuses)), (Some("ServiceL2StatusList"), vec!["l2-x"]));
        let groups = get(addr, "/apis").await.1;
        assert_eq!(groups["groups"][2]["preferredVersion"]["groupVersion"], "metallb.io/v1beta1");
        let resources = get(addr, "/apis/metallb.io/v1beta1").await.1;
        let plurals: Vec<&str> =
            resources["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(
            plurals,
            ["servicel2statuses", "servicebgpstatuses", "l2advertisements", "bgpadvertisements", "ipaddresspools"]
        );
        let core = get(addr, "/api/v1").await.1;
        let services = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "services").unwrap();
        assert_eq!((&services["shortNames"], &services["namespaced"]), (&json!(["svc"]), &json!(true)));
    });
}

#[test]
fn crds_installed_one_by_one_serve_only_their_kinds() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let apis = vec!["servicel2statuses.metallb.io".into(), "l2advertisements.metallb.io".into()];
        let problems = double.set_state(&ClusterState { apis, ..shop_state() });
        assert!(problems.is_empty(), "{problems:?}");
        let addr = double.addr();
        assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicel2statuses").await.0, 200);
        assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicebgpstatuses").await.0, 404);
        let resources = get(addr, "/apis/metallb.io/v1beta1").await.1;
        let plurals: Vec<&str> =
            resources["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(plurals, ["servicel2statuses", "l2advertisements"]);
        let problems = double.set_state(&ClusterState { apis: vec!["metallb.io/v2".into()], ..shop_state() });
        assert!(problems[0].contains("unknown API \"metallb.io/v2\""), "{problems:?}");
    });
}

#[test]
fn tables_are_served_to_clients_that_ask_for_them() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        double.set_state(&shop_state());
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let (code, table) = get_json(double.addr(), "/api/v1/namespaces/shop/pods", accept).await;
        assert_eq!((code, table["kind"].as_str()), (200, Some("Table")));
        assert_eq!(table["rows"].as_array().unwrap().len(), 2);
        assert_eq!(table["rows"][0]["cells"][0], "web-1");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let (_, table) = get_json(double.addr(), "/api/v1/namespaces/shop/pods?includeObject=Object", accept).await;
        assert_eq!(table["rows"][0]["object"]["kind"], "Pod");
        let text =
            request(double.addr(), "/api/v1/pods?watch=true", accept, |t| t.matches(r#""kind":"Table""#).count() >= 3)
                .await;
        let events: Vec<Value> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(
            events.iter().all(|e| e["type"] == "ADDED" && e["object"]["rows"].as_array().unwrap().len() == 1),
            "{text}"
        );
    });
}

/// POSTs `body` to `path`: the status code and the JSON answer.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await.unwrap().unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap();
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[test]
fn token_reviews_are_discovered_created_and_answered_from_the_state() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let issued = json!({"token": "agent-pi-1", "audiences": ["bakery"],
                            "user": {"username": "system:serviceaccount:bakery:bakery-agent",
                                     "groups": ["system:serviceaccounts"],
                                     "extra": {"authentication.kubernetes.io/pod-uid": ["uid-1"]}}});
        let problems = double.set_state(&ClusterState {
            tokenreviews: vec![issued, json!({"token": "nameless", "user": {}})],
            ..shop_state()
        });
        assert!(
            problems.contains(&"tokenreviews[1] skipped: user.username is not a string".to_string()),
            "{problems:?}"
        );
        let addr = double.addr();
        let groups = get(addr, "/apis").await.1;
        assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "authentication.k8s.io"), "{groups}");
        assert_eq!(get(addr, "/apis/authentication.k8s.io").await.0, 200);
        let resources = get(addr, "/apis/authentication.k8s.io/v1").await.1;
        assert_eq!(resources["resources"], json!([tokenreview::api_resource()]));
        assert_eq!(resources["resources"][0]["verbs"], json!(["create"]));

        let review = |token: &str| {
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                   "spec": {"token": token, "audiences": ["bakery"]}})
            .to_string()
        };
        let (code, answer) = post(addr, tokenreview::PATH, &review("agent-pi-1")).await;
        assert_eq!((code, &answer["status"]["authenticated"]), (201, &json!(true)), "{answer}");
        assert_eq!(answer["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"], json!(["uid-1"]));
        let (code, answer) = post(addr, tokenreview::PATH, &review("stolen?")).await;
        assert_eq!(code, 201);
        assert!(answer["status"]["error"].as_str().unwrap().contains("invalid bearer token"), "{answer}");
        assert_eq!(double.token_reviews_served(), 2);
        // listed nowhere, created only
        assert_eq!(get(addr, tokenreview::PATH).await.0, 405);
        assert_eq!(post(addr, "/api/v1/pods", "{}").await.0, 405, "the rest stays read-only");
    });
}

#[test]
fn a_filtered_watch_sees_objects_enter_and_leave_its_selection() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        double.set_state(&shop_state());
        let rv = double.resource_version();
        let mut moved = shop_state();
        moved.pods[0]["metadata"]["labels"]["app"] = json!("old");
        moved.pods[2]["metadata"]["labels"]["app"] = json!("web");
        double.set_state(&moved);
        let path = format!("/api/v1/pods?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb");
        let text = get_until(double.addr(), &path, |t| t.contains("DELETED") && t.contains("ADDED")).await;
        assert!(text.contains(r#""type":"DELETED""#) && text.contains("web-1"), "web-1 left the selection: {text}");
        assert!(text.contains(r#""type":"ADDED""#) && text.contains("db-0"), "db-0 entered it: {text}");
    });
}

#[test]
fn removing_an_api_ends_its_watches_and_its_paths_answer_404() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        double.set_state(&ClusterState { apis: vec![METALLB_API.into()], ..shop_state() });
        let addr = double.addr();
        let rv = double.resource_version();
        let path = format!("/apis/metallb.io/v1beta1/servicel2statuses?watch=true&resourceVersion={rv}");
        let watch = tokio::spawn(async move { get_until(addr, &path, |_| false).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let problems = double.set_state(&shop_state());
        assert_eq!(problems.len(), 1, "one line for the ignored objects: {problems:?}");
        assert!(problems[0].contains("1 servicel2statuses ignored"), "{problems:?}");
        let text = tokio::time::timeout(Duration::from_secs(5), watch).await.expect("the watch ends").unwrap();
        assert!(text.contains(r#""type":"DELETED""#), "{text}");
        assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicel2statuses").await.0, 404);
    });
}

#[test]
fn objects_a_server_would_refuse_are_skipped_with_a_reason_and_the_rest_is_served() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let state = ClusterState {
            apis: vec!["example.com/v1".into()],
            pods: vec![
                json!("web-1"),
                json!({"metadata": {"namespace": "shop"}}),
                json!({"kind": "Service", "metadata": {"name": "x"}}),
                json!({"metadata": {"name": "y", "labels": {"n": 1}}}),
                json!({"metadata": {"name": "z"}, "spec": []}),
                json!({"metadata": {"name": "ok"}}),
            ],
            ..ClusterState::default()
        };
        let problems = double.set_state(&state);
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems[0].contains("example.com/v1"));
        assert!(problems[1].contains("pods[0] skipped: not a JSON object"), "{problems:#?}");
        assert!(problems[2].contains("no metadata.name"), "{problems:#?}");
        let (_, pods) = get(double.addr(), "/api/v1/pods").await;
        assert_eq!(names(&pods), ["ok"]);
        assert_eq!(pods["items"][0]["metadata"]["namespace"], "default");
        assert_eq!(ClusterState::unknown_keys(r#"{"pods": [], "deployments": [], "apis": []}"#), ["deployments"]);
    });
}

#[test]
fn forbidden_resources_refuse_every_verb_and_port_forward_needs_an_upgrade() {
    runtime().block_on(async {
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let running = json!({"metadata": {"name": "web-1", "namespace": "shop"},
                             "status": {"phase": "Running", "podIP": "127.0.0.1"}});
        let secret = json!({"metadata": {"name": "db", "namespace": "shop"}, "stringData": {"user": "u", "pass": "p"}});
        let state = ClusterState {
            pods: vec![running],
            secrets: vec![secret],
            forbidden: vec!["tokenreviews".into(), "secret".into()],
            ..ClusterState::default()
        };
        let problems = double.set_state(&state);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(r#"forbidden: "secret" ignored"#), "{problems:?}");
        let addr = double.addr();
        let (code, status) = post(addr, tokenreview::PATH, "{}").await;
        assert_eq!((code, status["reason"].as_str()), (403, Some("Forbidden")));
        assert_eq!(
            status["message"],
            r#"tokenreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
        );
        assert_eq!(double.token_reviews_served(), 0);

        let core = get(addr, "/api/v1").await.1;
        let secrets = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "secrets").unwrap();
        assert_eq!((&secrets["namespaced"], secrets.get("shortNames")), (&json!(true), None));
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let (code, table) = get_json(addr, "/api/v1/namespaces/shop/secrets", accept).await;
        assert_eq!(code, 200);
        assert_eq!(table["rows"][0]["cells"].as_array().unwrap()[..3], [json!("db"), json!("Opaque"), json!(2)]);

        let forward = "/api/v1/namespaces/shop/pods/web-1/portforward?ports=80";
        let (code, status) = get(addr, forward).await;
        assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "a plain GET is no upgrade");
        assert!(status["message"].as_str().unwrap().starts_with("Upgrade request required"), "{status}");
        assert_eq!(post(addr, forward, "").await.0, 405, "port-forward is a GET upgrade; the rest stays read-only");
    });
}
