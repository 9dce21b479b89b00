//! OTLP export from the demo's collector to a receiver outside the cluster (`--otlp-endpoint`).
//!
//! The collector runs in the control namespace, which reaches nothing but the simulated LAN. So
//! the demo listens on that namespace's loopback and relays each connection, from its own
//! namespace, to the receiver the user named ([`Relay`]); the collector gets the standard OTEL_*
//! environment pointing at the relay ([`collector_env`]) and exports exactly as it would in a real
//! cluster. Nothing is configured in the root namespace: the relay only connects out of it, as
//! any client does. The relay forwards bytes, not TLS: an `https://` receiver is refused with a
//! message, because the collector would check the receiver's certificate against the relay's
//! address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bakery_lab::netns::Handle;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// How often the collector exports when OTEL_METRIC_EXPORT_INTERVAL is unset: the SDK's default
/// (60 s) is longer than a scenario's load, so a verdict could come and go between two exports.
pub const DEMO_EXPORT_INTERVAL_MS: u32 = 1_000;
/// `k8s.cluster.name` on every exported series unless BAKERY_CLUSTER_NAME says otherwise.
pub const CLUSTER_NAME: &str = "bakery-demo";
/// How long the relay waits for the receiver to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP transport, spelled as OTEL_EXPORTER_OTLP_PROTOCOL spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (receivers usually listen on 4317).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually 4318; the collector's default).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Where the demo's collector exports to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The endpoint as the user gave it.
    pub endpoint: String,
    /// `host:port` the relay connects to.
    pub target: String,
    /// The endpoint's path (empty, or e.g. `/otlp`), kept in the collector's endpoint.
    pub path: String,
    /// Unset: the collector's own default (http/protobuf).
    pub protocol: Option<Protocol>,
}

impl Export {
    /// Reads `http://HOST:PORT[/PATH]`; anything else is refused with what to give instead.
    pub fn parse(endpoint: &str, protocol: Option<Protocol>) -> Result<Self> {
        let endpoint = endpoint.trim();
        let invalid = |why: &'static str| Error::OtlpEndpoint { endpoint: endpoint.to_string(), why };
        let scheme_end = endpoint.find("://").ok_or_else(|| invalid("not a URL; give e.g. http://127.0.0.1:4317"))?;
        let rest = match endpoint[..scheme_end].to_ascii_lowercase().as_str() {
            "http" => &endpoint[scheme_end + 3..],
            "https" => {
                return Err(invalid(
                    "https is not relayed: the demo forwards the collector's connections out of its isolated \
                     namespace, and the collector would check the receiver's certificate against the relay's \
                     address. Give a plain http:// receiver on this machine (e.g. an OpenTelemetry Collector \
                     that forwards with TLS)",
                ));
            }
            _ => return Err(invalid("only http:// endpoints can be relayed")),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |slash| rest.split_at(slash));
        if authority.contains('@') {
            return Err(invalid("user information in the URL is not supported; use OTEL_EXPORTER_OTLP_HEADERS"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| invalid("an IPv6 address lacks its ]"))?;
                (format!("[{host}]"), after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            },
        };
        if host.is_empty() || host == "[]" {
            return Err(invalid("no host"));
        }
        let port = port.ok_or_else(|| invalid("give the port, e.g. :4317 for grpc or :4318 for http/protobuf"))?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| invalid("the port is not 1-65535"))?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            target: format!("{host}:{port}"),
            path: path.trim_end_matches('/').to_string(),
            protocol,
        })
    }
}

/// A change to the collector's inherited environment: `Some` sets the variable, `None` removes it.
pub type EnvChange = (&'static str, Option<String>);

/// The collector's environment: the relay as its OTLP endpoint (or no endpoint at all: one the
/// user set for other programs cannot be reached from the control namespace), the demo's export
/// interval and cluster name unless the user set theirs (`user` reads the demo's environment).
/// Every other OTEL_* variable (headers, compression, resource attributes) is inherited.
pub fn collector_env(relay: Option<(&Export, SocketAddr)>, user: impl Fn(&str) -> Option<String>) -> Vec<EnvChange> {
    let mut env: Vec<EnvChange> = vec![("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None)];
    match relay {
        None => env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", None)),
        Some((export, address)) => {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", Some(format!("http://{address}{}", export.path))));
            if let Some(protocol) = export.protocol {
                env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", Some(protocol.name().to_string())));
            }
            if user("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
                env.push(("OTEL_METRIC_EXPORT_INTERVAL", Some(DEMO_EXPORT_INTERVAL_MS.to_string())));
            }
        }
    }
    if user("BAKERY_CLUSTER_NAME").is_none() {
        env.push(("BAKERY_CLUSTER_NAME", Some(CLUSTER_NAME.to_string())));
    }
    env
}

/// What the relay did, for the demo's last lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections forwarded to the receiver.
    pub forwarded: u64,
    /// Connections the receiver did not take.
    pub failed: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

/// The line the demo prints when the relay stops.
pub fn describe(export: &Export, stats: &RelayStats) -> String {
    match &stats.last_error {
        None => format!("OTLP: {} connection(s) relayed to {}", stats.forwarded, export.endpoint),
        Some(error) => format!(
            "OTLP: {} of {} connection(s) to {} failed, the last because: {error}",
            stats.failed,
            stats.forwarded + stats.failed,
            export.endpoint
        ),
    }
}

/// The collector-side listener in the control namespace and the thread that forwards its
/// connections to the receiver. Stopped (and its connections closed) when dropped.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Listens on the loopback of network namespace `netns` (e.g. `bkd-control`) and forwards to
    /// `target` (`host:port`) from this thread's namespace.
    pub fn start(netns: &str, target: &str) -> Result<Self> {
        let namespace = Handle::open(netns)?;
        // setns changes only the calling thread, and a socket stays in the namespace it was
        // made in: a short-lived thread makes the listener there.
        let listener = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    namespace.enter()?;
                    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                        .map_err(|source| Error::Start { what: "listening for the collector's OTLP", source })?;
                    listener
                        .set_nonblocking(true)
                        .map_err(|source| Error::Start { what: "listening for the collector's OTLP", source })?;
                    Ok::<_, Error>(listener)
                })
                .join()
                .map_err(|_| Error::Start {
                    what: "the OTLP relay's listener",
                    source: std::io::Error::other("its thread panicked"),
                })?
        })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Start { what: "listening for the collector's OTLP", source })?;
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let (stop, stopped) = oneshot::channel();
        let target = target.to_string();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("otlp-relay".into())
            .spawn(move || relay(listener, target, stopped, thread_stats))
            .map_err(|source| Error::Start { what: "the OTLP relay", source })?;
        Ok(Self { address, stats, stop: Some(stop), thread: Some(thread) })
    }

    /// Where the collector connects, in the control namespace.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops listening, closes the open connections and returns what was relayed.
    pub fn stop(&mut self) -> RelayStats {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(stats: &Mutex<RelayStats>, outcome: std::result::Result<(), String>) {
    if let Ok(mut stats) = stats.lock() {
        match outcome {
            Ok(()) => stats.forwarded += 1,
            Err(error) => {
                stats.failed += 1;
                stats.last_error = Some(error);
            }
        }
    }
}

fn relay(
    listener: std::net::TcpListener,
    target: String,
    mut stopped: oneshot::Receiver<()>,
    stats: Arc<Mutex<RelayStats>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return record(&stats, Err(format!("cannot start the relay's runtime: {e}"))),
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => return record(&stats, Err(format!("cannot use the relay's listener: {e}"))),
        };
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((mut inbound, _)) => {
                        let (target, stats) = (target.clone(), Arc::clone(&stats));
                        tokio::spawn(async move {
                            let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target)).await;
                            match connected {
                                Ok(Ok(mut outbound)) => {
                                    record(&stats, Ok(()));
                                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                                }
                                Ok(Err(e)) => record(&stats, Err(format!("cannot connect to {target}: {e}"))),
                                Err(_) => record(&stats, Err(format!("{target} did not accept within {CONNECT_TIMEOUT:?}"))),
                            }
                        });
                    }
                    // Out of descriptors, say: try again shortly rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn endpoints_parse_into_the_relay_target_and_the_path() {
        for (endpoint, target, path) in [
            ("http://127.0.0.1:4317", "127.0.0.1:4317", ""),
            ("  HTTP://localhost:4318/ ", "localhost:4318", ""),
            ("http://otel.internal:4318/otlp", "otel.internal:4318", "/otlp"),
            ("http://[::1]:4317", "[::1]:4317", ""),
        ] {
            let export = Export::parse(endpoint, Some(Protocol::Grpc)).unwrap();
            assert_eq!((export.target.as_str(), export.path.as_str()), (target, path), "{endpoint}");
        }
    }

    #[test]
    fn endpoints_the_relay_cannot_serve_are_refused_with_the_reason() {
        for (endpoint, reason) in [
            ("https://otel.example:4317", "https is not relayed"),
            ("127.0.0.1:4317", "not a URL"),
            ("grpc://127.0.0.1:4317", "only http://"),
            ("http://127.0.0.1", "give the port"),
            ("http://127.0.0.1:0", "1-65535"),
            ("http://127.0.0.1:4317x", "1-65535"),
            ("http://:4317", "no host"),
            ("http://[::1", "lacks its ]"),
            ("http://user:secret@127.0.0.1:4317", "user information"),
        ] {
            let error = Export::parse(endpoint, None).unwrap_err().to_string();
            assert!(error.contains(reason), "{endpoint}: {error}");
        }
    }

    #[test]
    fn the_last_line_says_whether_the_receiver_was_reached() {
        let export = Export::parse("http://127.0.0.1:4317", None).unwrap();
        let fine = RelayStats { forwarded: 2, failed: 0, last_error: None };
        assert_eq!(describe(&export, &fine), "OTLP: 2 connection(s) relayed to http://127.0.0.1:4317");
        let refused = RelayStats {
            forwarded: 0,
            failed: 3,
            last_error: Some("cannot connect to 127.0.0.1:4317: refused".into()),
        };
        let line = describe(&export, &refused);
        assert!(line.starts_with("OTLP: 3 of 3 connection(s) to http://127.0.0.1:4317 failed"), "{line}");
        assert!(line.ends_with("refused"), "{line}");
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn value<'a>(env: &'a [EnvChange], name: &str) -> Option<&'a Option<String>> {
        env.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    #[test]
    fn the_collector_exports_to_the_relay_with_the_demos_defaults() {
        let export = Export::parse("http://127.0.0.1:4318/otlp", Some(Protocol::HttpProtobuf)).unwrap();
        let relay: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let env = collector_env(Some((&export, relay)), env_of(&[]));
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_ENDPOINT"), Some(&Some("http://127.0.0.1:41234/otlp".into())));
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), Some(&None));
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_PROTOCOL"), Some(&Some("http/protobuf".into())));
        assert_eq!(value(&env, "OTEL_METRIC_EXPORT_INTERVAL"), Some(&Some("1000".into())));
        assert_eq!(value(&env, "BAKERY_CLUSTER_NAME"), Some(&Some(CLUSTER_NAME.into())));
    }

    #[test]
    fn the_users_own_settings_are_kept() {
        let export = Export::parse("http://127.0.0.1:4317", None).unwrap();
        let relay: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let user = env_of(&[("OTEL_METRIC_EXPORT_INTERVAL", "5000"), ("BAKERY_CLUSTER_NAME", "pis")]);
        let env = collector_env(Some((&export, relay)), user);
        assert_eq!(value(&env, "OTEL_METRIC_EXPORT_INTERVAL"), None, "inherited as the user set it");
        assert_eq!(value(&env, "BAKERY_CLUSTER_NAME"), None);
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_PROTOCOL"), None, "without --otlp-protocol, inherited");
    }

    #[test]
    fn without_an_export_no_unreachable_endpoint_is_inherited() {
        let env = collector_env(None, env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]));
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_ENDPOINT"), Some(&None));
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), Some(&None));
        assert_eq!(value(&env, "OTEL_METRIC_EXPORT_INTERVAL"), None);
    }
}
