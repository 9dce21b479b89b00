//! The scenario format's tests: the shipped files, defaults, expectations and every named mistake.

use std::time::Duration;

use bakery_diagnosis::Cause;

use super::*;

const MINIMAL: &str = r#"
    name = "mini"
    expect = "none"
    [[nodes]]
    name = "a"
    role = "control-plane"
    [[nodes]]
    name = "b"
    role = "worker"
    [[workloads]]
    name = "web"
    kind = "Deployment"
    app = "web"
    placement = ["a", "b"]
    [service]
    workload = "web"
    entry = "every-node"
"#;

#[test]
fn every_shipped_scenario_parses() {
    for (name, text) in SHIPPED {
        let scenario = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scenario.name, *name, "the file name is the scenario name");
    }
    assert!(SHIPPED.iter().any(|(name, _)| *name == DEFAULT_SCENARIO));
}

#[test]
fn every_file_in_the_scenarios_folder_is_shipped() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    files.sort();
    let mut shipped: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    shipped.sort();
    assert_eq!(files, shipped);
}

#[test]
fn defaults_fill_what_a_file_leaves_out() {
    let scenario = Scenario::parse(MINIMAL).unwrap();
    assert_eq!(scenario.expect, Expectation::none());
    assert_eq!(scenario.proxy, ProxySpec { kind: ProxyKind::Nginx, upstream_keepalive: false });
    assert_eq!(scenario.load.duration, Duration::from_secs(30));
    assert_eq!(scenario.load.connections, 50);
    assert!(scenario.load.keepalive);
    let web = scenario.served();
    assert_eq!((web.cpu_ms, web.response_bytes, web.port()), (4.0, 50_000, 80));
    assert_eq!(scenario.service.external_traffic_policy, TrafficPolicy::Cluster);
    assert!(scenario.service.metallb, "MetalLB is installed unless the scenario says otherwise");
    assert_eq!(scenario.entry_nodes(), vec!["a", "b"]);
    assert_eq!(scenario.relay(), None);
    let burner =
        Scenario::parse(&MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nextras = { burn_cores = 1.0 }"))
            .unwrap();
    assert_eq!(burner.node("b").unwrap().extras.burn_starts, BurnStart::WithLoad, "the burner starts with the load");
    let at_boot = MINIMAL
        .replace("role = \"worker\"", "role = \"worker\"\nextras = { burn_cores = 1.0, burn_starts = \"at-boot\" }");
    assert_eq!(Scenario::parse(&at_boot).unwrap().node("b").unwrap().extras.burn_starts, BurnStart::AtBoot);
}

fn expected(node: &str, cause: Cause) -> ExpectedVerdict {
    let node =
        if node == "pinned" { ExpectedNode::Pinned(PinnedMarker::Pinned) } else { ExpectedNode::Named(node.into()) };
    ExpectedVerdict { node, cause }
}

#[test]
fn expectations_read_as_written() {
    let hog = MINIMAL.replace("expect = \"none\"", "expect = { node = \"b\", cause = \"ingress-concentration\" }");
    let scenario = Scenario::parse(&hog).unwrap();
    assert_eq!(scenario.expect.verdicts, [expected("b", Cause::IngressConcentration)]);
    let pinned = MINIMAL.replace("expect = \"none\"", "expect = { node = \"pinned\", cause = \"connection-pinning\" }");
    let scenario = Scenario::parse(&pinned).unwrap();
    assert_eq!(scenario.expect.verdicts, [expected("pinned", Cause::ConnectionPinning)]);
    let several = MINIMAL.replace(
        "expect = \"none\"",
        "expect = [{ node = \"a\", cause = \"ingress-concentration\" }, { node = \"pinned\", cause = \"pod-concentration\" }]",
    );
    let scenario = Scenario::parse(&several).unwrap();
    assert_eq!(
        scenario.expect.verdicts,
        [expected("a", Cause::IngressConcentration), expected("pinned", Cause::PodConcentration)]
    );
    // Written back the way it was read.
    for text in [MINIMAL.to_string(), hog, several] {
        let scenario = Scenario::parse(&text).unwrap();
        let again = Scenario::parse(&toml::to_string(&scenario).unwrap()).unwrap();
        assert_eq!(again, scenario);
    }
}

#[test]
fn mistakes_are_named_before_anything_is_built() {
    let l2 = |rest: &str| MINIMAL.replace("entry = \"every-node\"", &format!("entry = \"l2\"{rest}"));
    let with_proxy = |proxy: &str| {
        format!(
            "{}\n[[workloads]]\nname = \"npm\"\nkind = \"Deployment\"\n{proxy}\nplacement = [\"b\"]\n",
            MINIMAL.replace("workload = \"web\"", "workload = \"npm\"")
        )
    };
    let thirteen_nodes: String = (1..=13).map(|i| format!("[[nodes]]\nname = \"n{i}\"\nrole = \"worker\"\n")).collect();
    let cases = [
        (MINIMAL.replace("placement = [\"a\", \"b\"]", "placement = [\"a\", \"c\"]"), "unknown node \"c\""),
        (l2("\nannouncer = \"z\""), "announcer \"z\""),
        (l2(""), "entry = \"l2\" needs its announcer"),
        (
            l2("\nannouncer = \"a\"\nexternal_traffic_policy = \"Local\"")
                .replace("placement = [\"a\", \"b\"]", "placement = [\"b\"]"),
            "the announcer \"a\" has no \"web\" pod",
        ),
        (MINIMAL.replace("entry = \"every-node\"", "entry = \"every-node\"\nannouncer = \"a\""), "only makes sense"),
        (MINIMAL.replace("workload = \"web\"", "workload = \"db\""), "not a web or proxy workload"),
        (MINIMAL.replace("expect = \"none\"", "expect = { node = \"q\", cause = \"memory-pressure\" }"), "\"q\""),
        (MINIMAL.replace("expect = \"none\"", "expect = \"maybe\""), "expect = \"maybe\": write expect = \"none\""),
        (MINIMAL.replace("expect = \"none\"", "expect = []"), "write expect = \"none\" for no hog"),
        (
            MINIMAL.replace("expect = \"none\"", "expect = { node = \"a\", cause = \"too-much\" }"),
            "unknown variant `too-much`",
        ),
        (
            MINIMAL.replace(
                "expect = \"none\"",
                "expect = [{ node = \"a\", cause = \"pod-concentration\" }, { node = \"a\", cause = \"pod-concentration\" }]",
            ),
            "expect lists a pod-concentration twice",
        ),
        (MINIMAL.replace("name = \"b\"", "name = \"a\""), "listed twice"),
        (MINIMAL.replace("name = \"b\"", "name = \"pinned\"").replace("\"b\"]", "\"pinned\"]"), "cannot be called"),
        (MINIMAL.replace("name = \"b\"", "name = \"worker-node-01\""), "up to 12"),
        (format!("{MINIMAL}\n[load]\nduration = \"soon\""), "duration"),
        (format!("{MINIMAL}\n[load]\nrate = 0"), "rate"),
        (MINIMAL.replace("app = \"web\"", "app = \"web\"\ndatabase = \"web\""), "not a database"),
        (MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nextras = { burn_cores = 99.0 }"), "burn_cores"),
        (MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nmemory_mib = 32"), "memory_mib 32 is outside"),
        (
            MINIMAL.replace(
                "role = \"worker\"",
                "role = \"worker\"\nmemory_mib = 512\nextras = { memory_hog_mib = 480 }",
            ),
            "memory_hog_mib 480 leaves less than 48 MiB of memory_mib 512",
        ),
        (format!("{MINIMAL}\n{thirteen_nodes}"), "15 nodes; use 1 to 12"),
        (with_proxy("app = \"proxy\""), "needs an upstream"),
        (with_proxy("app = \"proxy\"\nupstream = \"npm\""), "relays to \"npm\", which is not a web workload"),
        (with_proxy("app = \"web\"\nupstream = \"web\""), "only a proxy workload has an upstream"),
        (with_proxy("app = \"web\"\nupstream_keepalive = true"), "upstream_keepalive is for proxy workloads"),
        (with_proxy("app = \"proxy\"\nupstream = \"web\"\ndatabase = \"web\""), "only a web workload queries"),
        (
            with_proxy("app = \"proxy\"\nupstream = \"web\"").replace("workload = \"npm\"", "workload = \"web\""),
            "proxy workload \"npm\" is not behind the Service",
        ),
        (
            format!("{MINIMAL}\n[[workloads]]\nname = \"web-2\"\nkind = \"Deployment\"\napp = \"web\"\nplacement = [\"a\"]\n")
                .replace("name = \"web\"", "name = \"w-e-b2\"")
                .replace("workload = \"web\"", "workload = \"w-e-b2\""),
            "kube-proxy's chains",
        ),
    ];
    for (text, expected) in cases {
        let error = bakery_lab::chain(&Scenario::parse(&text).unwrap_err());
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    }
}

#[test]
fn a_node_memory_holds_its_hog_and_the_reserve_and_defaults_to_no_limit() {
    let scenario = Scenario::parse(MINIMAL).unwrap();
    assert_eq!(scenario.node("b").unwrap().memory_mib, None, "no limit: the machine's memory");
    let squeezed =
        MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nmemory_mib = 512\nextras = { memory_hog_mib = 464 }");
    let scenario = Scenario::parse(&squeezed).unwrap();
    let node = scenario.node("b").unwrap();
    assert_eq!((node.memory_mib, node.extras.memory_hog_mib), (Some(512), 464));
}

#[test]
fn an_l2_service_enters_at_its_named_announcer_only() {
    let text = MINIMAL.replace("entry = \"every-node\"", "entry = \"l2\"\nannouncer = \"b\"");
    let scenario = Scenario::parse(&text).unwrap();
    assert_eq!(scenario.announcer(), Some("b"));
    assert_eq!(scenario.entry_nodes(), vec!["b"]);
}

#[test]
fn a_service_in_front_of_a_proxy_serves_the_proxys_upstream() {
    let text = format!(
        "{}\n[[workloads]]\nname = \"npm\"\nkind = \"Deployment\"\napp = \"proxy\"\nupstream = \"web\"\nplacement = [\"b\"]\n",
        MINIMAL
            .replace("workload = \"web\"", "workload = \"npm\"")
            .replace("entry = \"every-node\"", "entry = \"every-node\"\nexternal_traffic_policy = \"Local\"")
    );
    let scenario = Scenario::parse(&text).unwrap();
    assert_eq!(scenario.entry_workload().name, "npm");
    assert_eq!(scenario.relay().map(|w| w.name.as_str()), Some("npm"));
    assert_eq!(scenario.served().name, "web", "the load is for the web workload behind the proxy");
    assert_eq!(scenario.entry_workload().port(), 80);
    assert!(!scenario.entry_workload().upstream_keepalive, "one upstream connection per request by default");
    assert_eq!(scenario.entry_nodes(), vec!["b"], "Local: MetalLB announces only where the proxy runs");
}

#[test]
fn one_to_twelve_nodes_are_accepted() {
    let nodes = |n: usize| -> String {
        (1..=n).map(|i| format!("[[nodes]]\nname = \"worker-{i:02}\"\nrole = \"worker\"\n")).collect()
    };
    for n in [1, MAX_NODES] {
        let text = format!(
            "name = \"n{n}\"\nexpect = \"none\"\n{}[[workloads]]\nname = \"web\"\nkind = \"Deployment\"\napp = \"web\"\nplacement = [\"worker-01\", \"worker-01\"]\n[service]\nworkload = \"web\"\nentry = \"l2\"\nannouncer = \"worker-{n:02}\"\n",
            nodes(n)
        );
        let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{n} nodes: {e}"));
        assert_eq!(scenario.nodes.len(), n);
    }
}

#[test]
fn hex_words_with_or_without_prefix() {
    assert_eq!(parse_hex("0x50005"), Some(0x50005));
    assert_eq!(parse_hex("50005"), Some(0x50005));
    assert_eq!(parse_hex("hot"), None);
}

/// MINIMAL with `extras` on node b.
fn with_extras_on_b(extras: &str) -> String {
    MINIMAL.replace("role = \"worker\"", &format!("role = \"worker\"\nextras = {extras}"))
}

/// MINIMAL behind an L2 announcer a, with `rest` under `[service]`.
fn l2_from_a(rest: &str) -> String {
    MINIMAL.replace("entry = \"every-node\"", &format!("entry = \"l2\"\nannouncer = \"a\"\n{rest}"))
}

#[test]
fn a_hog_comes_on_mid_run_at_its_start() {
    let burner = Scenario::parse(&with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 6 }")).unwrap();
    assert_eq!(burner.node("b").unwrap().extras.burn_start_s, Some(6.0), "whole seconds read as seconds");
    assert_eq!(burner.mid_run_starts(), [(6.0, "b's burner".to_string())]);
    assert_eq!(burner.onset_s(), Some(6.0));
    let thermal = Scenario::parse(&with_extras_on_b(
        "{ thermal = { temperature_celsius = 84.0, current_mhz = 1500, throttled = \"0x50005\", start_s = 7.5 } }",
    ))
    .unwrap();
    assert_eq!(thermal.node("b").unwrap().extras.thermal.as_ref().unwrap().start_s, Some(7.5));
    assert_eq!(thermal.mid_run_starts(), [(7.5, "b's thermal overlay".to_string())]);
    let failover = Scenario::parse(&l2_from_a("failover = { announcer = \"b\", start_s = 6 }")).unwrap();
    assert_eq!(failover.service.failover, Some(Failover { announcer: "b".into(), start_s: 6.0 }));
    assert_eq!(failover.announcer(), Some("a"), "the announcer is the first one");
    assert_eq!(failover.mid_run_starts(), [(6.0, "the failover to b".to_string())]);
    let together = with_extras_on_b(
        "{ burn_cores = 1.0, burn_start_s = 6, thermal = { temperature_celsius = 84.0, current_mhz = 1500, start_s = 6 } }",
    );
    assert_eq!(Scenario::parse(&together).unwrap().mid_run_starts().len(), 2, "hogs may come on together");
    for scenario in [&burner, &thermal, &failover] {
        assert_eq!(Scenario::parse(&toml::to_string(scenario).unwrap()).unwrap(), *scenario, "written back");
    }
    let minimal = Scenario::parse(MINIMAL).unwrap();
    assert_eq!(minimal.onset_s(), None, "every hog on from the start");
    assert_eq!(minimal.verdict_within_s(), DEFAULT_VERDICT_WITHIN_S);
    assert_eq!(DEFAULT_VERDICT_WITHIN_S, 3.0);
    assert!(!toml::to_string(&minimal).unwrap().contains("start_s"), "nothing written for what is not there");
    let bounded = Scenario::parse(&MINIMAL.replace("expect = \"none\"", "expect = \"none\"\nverdict_within_s = 5"));
    assert_eq!(bounded.unwrap().verdict_within_s(), 5.0);
}

#[test]
fn mid_run_mistakes_are_named_before_anything_is_built() {
    let hot_a = "{ thermal = { temperature_celsius = 84.0, current_mhz = 1500, start_s = 8 } }";
    let cases = [
        (
            with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 40 }"),
            "b's burner starts at 40 s, after the load ends (30 s)",
        ),
        (
            format!("{}\n[load]\nduration = \"10s\"", with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 6 }")),
            "b's burner starts at 6 s, 4.0 s before the load ends (10 s): the verdict needs verdict_within_s (3 s)",
        ),
        (with_extras_on_b("{ burn_cores = 1.0, burn_start_s = -1 }"), "starts at -1 s: give seconds into the load"),
        (with_extras_on_b("{ burn_start_s = 6 }"), "b: burn_start_s without burn_cores"),
        (with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 6, burn_starts = \"at-boot\" }"), "keep one"),
        (
            with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 6 }")
                .replace("role = \"control-plane\"", &format!("role = \"control-plane\"\nextras = {hot_a}")),
            "a's thermal overlay starts at 8 s and b's burner at 6 s: a scenario's hogs come on at one onset",
        ),
        (
            with_extras_on_b("{ burn_cores = 1.0, burn_start_s = 6 }")
                .replace("role = \"control-plane\"", "role = \"control-plane\"\nextras = { memory_hog_mib = 64 }"),
            "a's memory hog is on from the start while b's burner starts at 6 s",
        ),
        (
            with_extras_on_b(
                "{ burn_cores = 1.0, thermal = { temperature_celsius = 84.0, current_mhz = 1500, start_s = 6 } }",
            ),
            "b's burner is on from the start while b's thermal overlay starts at 6 s",
        ),
        (
            MINIMAL.replace(
                "entry = \"every-node\"",
                "entry = \"every-node\"\nfailover = { announcer = \"b\", start_s = 6 }",
            ),
            "a failover moves an L2 announcer: it needs entry = \"l2\"",
        ),
        (l2_from_a("failover = { announcer = \"a\", start_s = 6 }"), "\"a\" is the Service's announcer already"),
        (l2_from_a("failover = { announcer = \"z\", start_s = 6 }"), "the failover's announcer \"z\" is not a node"),
        (
            l2_from_a("failover = { announcer = \"b\", start_s = 6 }\nexternal_traffic_policy = \"Local\"")
                .replace("placement = [\"a\", \"b\"]", "placement = [\"a\"]"),
            "the failover's announcer \"b\" has no \"web\" pod",
        ),
        (
            l2_from_a("failover = { announcer = \"b\", start_s = 40 }"),
            "the failover to b starts at 40 s, after the load ends",
        ),
        (l2_from_a("failover = { announcer = \"b\" }"), "missing field `start_s`"),
        (l2_from_a("failover = { announcer = \"b\", start_s = 6, at = 1 }"), "unknown field `at`"),
        (
            MINIMAL.replace("expect = \"none\"", "expect = \"none\"\nverdict_within_s = 0"),
            "verdict_within_s 0 is outside",
        ),
    ];
    for (text, expected) in cases {
        let error = bakery_lab::chain(&Scenario::parse(&text).unwrap_err());
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    }
}
