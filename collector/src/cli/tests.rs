//! The collector's command line as parsed: defaults, durations, the flags that reach the
//! configuration, the limits, the test-only fault and the help text that teaches.

use clap::CommandFactory;

use super::*;
use crate::auth::{AuthSettings, Authenticator};

/// What the collector says at start about the credentials these flags give.
fn auth_error(flags: &[&str]) -> String {
    let cli = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d"].iter().chain(flags)).unwrap();
    let config = cli.serve.to_config().unwrap();
    let settings = AuthSettings {
        shared_token_file: config.token_file,
        credentials: config.credentials,
        client_certificates: false,
        insecure_no_auth: config.insecure_no_auth,
    };
    Authenticator::new(&settings).unwrap_err().to_string()
}

#[test]
fn serve_is_the_default_subcommand() {
    let cli = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"]).unwrap();
    assert!(cli.command.is_none());
    let config = cli.serve.to_config().unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/d"));
    assert_eq!(config.listen.port(), 7431);
    assert_eq!(config.commit.interval, Duration::from_millis(200));
    assert_eq!(config.commit.retention, Duration::from_secs(7 * 24 * 3600));
    assert!(config.insecure_no_auth);
}

#[test]
fn serve_subcommand_and_durations() {
    let cli = Cli::try_parse_from([
        "bakery-collector",
        "serve",
        "--data-dir",
        "/d",
        "--listen",
        "127.0.0.1:0",
        "--retention",
        "36h",
        "--commit-interval",
        "1s",
        "--token-file",
        "/t",
    ])
    .unwrap();
    let Some(Command::Serve(args)) = cli.command else { panic!("serve expected") };
    let config = args.to_config().unwrap();
    assert_eq!(config.commit.retention, Duration::from_secs(36 * 3600));
    assert_eq!(config.commit.interval, Duration::from_secs(1));
    assert_eq!(config.token_file, Some(PathBuf::from("/t")));
}

#[test]
fn kubernetes_and_window_flags() {
    let parse = |args: &[&str]| {
        let cli =
            Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))
                .unwrap();
        cli.serve.to_config().unwrap().diagnosis
    };
    let defaults = parse(&["--kubeconfig", "/k"]);
    assert_eq!(defaults.kube, KubeMode::Kubeconfig(PathBuf::from("/k")));
    assert_eq!(defaults.window_interval_ms, 250);
    assert!(defaults.automatic_windows);
    let off = parse(&["--kubeconfig", "/k", "--no-kubernetes", "--window-interval", "500ms", "--no-auto-windows"]);
    assert_eq!(off.kube, KubeMode::Disabled, "--no-kubernetes wins");
    assert_eq!(parse(&[]).kube, KubeMode::Infer);
    assert_eq!(off.window_interval_ms, 500);
    assert!(!off.automatic_windows);
    let too_fast = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--window-interval", "1ms"]).unwrap();
    assert!(too_fast.serve.to_config().is_err());
}

#[test]
fn inspect_needs_no_serve_flags() {
    let cli = Cli::try_parse_from(["bakery-collector", "inspect", "--data-dir", "/d", "--json"]).unwrap();
    let Some(Command::Inspect(args)) = cli.command else { panic!("inspect expected") };
    assert!(args.json);
    assert!(!args.verify);
    let cli = Cli::try_parse_from(["bakery-collector", "inspect", "--file", "/d/bakery.redb.corrupt-1"]).unwrap();
    let Some(Command::Inspect(args)) = cli.command else { panic!("inspect expected") };
    assert_eq!(args.file, Some(PathBuf::from("/d/bakery.redb.corrupt-1")));
    // BAKERY_DATA_DIR in a collector's environment must not stop `inspect --file`.
    let cli = Cli::try_parse_from(["bakery-collector", "inspect", "--data-dir", "/d", "--file", "/f"]).unwrap();
    let Some(Command::Inspect(args)) = cli.command else { panic!("inspect expected") };
    assert_eq!(args.file, Some(PathBuf::from("/f")), "--file wins");
    assert!(Cli::try_parse_from(["bakery-collector", "inspect", "--json"]).is_err(), "a store is required");
}

#[test]
fn health_listen_and_retention_size() {
    let parse = |args: &[&str]| {
        let cli =
            Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))
                .unwrap();
        cli.serve.to_config().unwrap()
    };
    let defaults = parse(&[]);
    assert_eq!(defaults.health_listen, Some("0.0.0.0:9465".parse().unwrap()));
    assert!(!defaults.health_listen_required, "a taken default port does not stop the collector");
    assert_eq!(defaults.commit.retention_size_bytes, None);
    assert_eq!(defaults.commit.panic_after_commits, None);
    let set = parse(&["--health-listen", "127.0.0.1:19465", "--retention-size", "2GiB"]);
    assert_eq!(set.health_listen, Some("127.0.0.1:19465".parse().unwrap()));
    assert!(set.health_listen_required);
    assert_eq!(set.commit.retention_size_bytes, Some(2 << 30));
    let bad = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--retention-size", "2 parsecs"]);
    let error = bad.unwrap_err().to_string();
    assert!(error.contains("unknown unit"), "{error}");
}

#[test]
fn a_fault_is_refused_unless_explicitly_allowed() {
    let allowed = |name: &str| (name == ALLOW_FAULTS_VAR).then(|| "1".to_string());
    let not_allowed = |_: &str| None;
    assert_eq!(test_fault(None, not_allowed).unwrap(), None);
    let refused = test_fault(Some("committer-panic-after=3"), not_allowed).unwrap_err().to_string();
    assert!(refused.contains("BAKERY_TEST_ONLY_ALLOW_FAULTS=1"), "{refused}");
    assert_eq!(test_fault(Some("committer-panic-after=3"), allowed).unwrap(), Some(Fault::CommitterPanicAfter(3)));
    for bad in ["committer-panic-after=0", "committer-panic-after=x", "disk-full"] {
        assert!(test_fault(Some(bad), allowed).is_err(), "{bad}");
    }
    // the flag is hidden from --help
    let help = Cli::command().render_long_help().to_string();
    assert!(!help.contains("--fault"), "{help}");
    assert!(help.contains("--retention-size") && help.contains("--health-listen"));
}

#[test]
fn auth_and_metrics_flags() {
    let parse = |args: &[&str]| {
        let cli = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d"].iter().chain(args))?;
        Ok::<_, clap::Error>(cli.serve.to_config().unwrap())
    };
    let config = parse(&[
        "--node-token-file",
        "/n",
        "--read-token-file",
        "/r",
        "--control-token-file",
        "/c",
        "--agent-service-account",
        "bakery/bakery-agent",
        "--metrics-listen",
        "127.0.0.1:9464",
        "--metrics-require-token",
    ])
    .unwrap();
    assert_eq!(config.credentials.node_token_file, Some(PathBuf::from("/n")));
    assert_eq!(config.credentials.read_token_file, Some(PathBuf::from("/r")));
    assert_eq!(config.credentials.control_token_file, Some(PathBuf::from("/c")));
    assert_eq!(
        config.credentials.agent_service_account.unwrap().username(),
        "system:serviceaccount:bakery:bakery-agent"
    );
    assert_eq!(config.export.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(config.export.metrics_require_token);
    // (--metrics-listen value, listen address)
    let table: [(&str, Option<&str>); 4] =
        [("off", None), ("", None), ("0.0.0.0:19464", Some("0.0.0.0:19464")), ("[::1]:9464", Some("[::1]:9464"))];
    for (value, expected) in table {
        let export = parse(&["--insecure-no-auth", "--metrics-listen", value]).unwrap().export;
        assert_eq!(export.metrics_listen, expected.map(|a| a.parse().unwrap()), "{value:?}");
    }
    assert!(parse(&["--insecure-no-auth", "--metrics-listen", "localhost"]).is_err());
    assert!(parse(&["--agent-service-account", "bakery"]).is_err(), "NAMESPACE/NAME");
    for token_flag in ["--node-token-file", "--read-token-file", "--control-token-file", "--agent-service-account"] {
        let error = auth_error(&["--insecure-no-auth", token_flag, "a/b"]);
        assert!(error.contains("--insecure-no-auth contradicts the token flags"), "{token_flag}: {error}");
    }
    let help = Cli::command().render_long_help().to_string();
    for taught in ["does NOT bind identity", "NODE TOKEN", "Subject CN", "TokenReview", "`off`"] {
        assert!(help.contains(taught), "--help teaches {taught:?}");
    }
}

#[test]
fn limit_flags_have_small_cluster_defaults_and_refuse_nonsense() {
    let parse = |args: &[&str]| {
        let cli =
            Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))?;
        Ok::<_, clap::Error>(cli.serve.to_config().unwrap().limits)
    };
    assert_eq!(parse(&[]).unwrap(), IngestLimits::default());
    let defaults = IngestLimits::default();
    assert_eq!((defaults.max_nodes, defaults.max_pods_per_node), (256, 512));
    assert_eq!(defaults.forget_nodes_after, Duration::from_secs(600));
    let set = parse(&[
        "--max-nodes",
        "8",
        "--max-pods-per-node",
        "100",
        "--max-sample-entries",
        "64",
        "--max-string-bytes",
        "128",
        "--max-queue-bytes",
        "8MiB",
        "--max-history-bytes",
        "4MiB",
        "--max-message-bytes",
        "1MiB",
        "--forget-nodes-after",
        "30s",
    ])
    .unwrap();
    assert_eq!(
        set,
        IngestLimits {
            max_nodes: 8,
            max_pods_per_node: 100,
            max_sample_entries: 64,
            max_string_bytes: 128,
            max_queue_bytes: 8 << 20,
            max_history_bytes: 4 << 20,
            max_message_bytes: 1 << 20,
            forget_nodes_after: Duration::from_secs(30),
        }
    );
    for bad in [
        ["--max-nodes", "0"],
        ["--max-pods-per-node", "-1"],
        ["--max-string-bytes", "8"],
        ["--max-queue-bytes", "1kB"],
        ["--max-history-bytes", "lots"],
        ["--max-message-bytes", "32KiB"],
        ["--max-message-bytes", "5MiB"],
    ] {
        assert!(parse(&bad).is_err(), "{bad:?}");
    }
    let help = Cli::command().render_long_help().to_string();
    for taught in ["Limits:", "--max-nodes", "forgotten from memory", "bakery_collector_ingest_refusals_total"] {
        assert!(help.contains(taught), "--help teaches {taught:?}");
    }
}

#[test]
fn flags_that_contradict_are_refused() {
    let error = auth_error(&["--token-file", "/t", "--insecure-no-auth"]);
    assert!(error.contains("--insecure-no-auth contradicts the token flags"), "{error}");
    assert!(Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--tls-cert", "/c"]).is_err());
    assert!(Cli::try_parse_from(["bakery-collector", "--insecure-no-auth"]).is_err(), "--data-dir is required");
}
