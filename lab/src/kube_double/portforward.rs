//! Port-forward: a pod's ports over a WebSocket (`v4.channel.k8s.io`), each to a TCP connection.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::routes::{object_not_found, status_response};
use super::{Kind, Shared};

/// The path segment after the pod, and the RBAC subresource (`pods/portforward`).
pub(super) const SUBRESOURCE: &str = "portforward";
/// The WebSocket subprotocol answered: binary frames, each led by its channel byte.
pub(super) const PROTOCOL: &str = "v4.channel.k8s.io";
/// One channel byte carries a data and an error channel per port.
const MAX_PORTS: usize = 128;
/// How long a connection to a pod may take before the port reports an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the double waits for the client's answer to its Close before dropping the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why the `ports` query parameter names no ports to forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PortsError {
    #[error("query parameter \"ports\" is required")]
    Missing,
    #[error("query parameter \"ports\" cannot be empty")]
    Empty,
    #[error("unable to parse {0:?} as a port")]
    Unparsable(String),
    #[error("port {0:?} must be > 0")]
    Zero(String),
    #[error("at most {MAX_PORTS} ports can be forwarded at once, {0} were asked for")]
    TooMany(usize),
}

/// Why a port-forward is refused before the upgrade (`400 BadRequest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error("unable to forward port because pod is not running. Current status={0}")]
    NotRunning(String),
    #[error("pod {0} has no IP in status.podIP or status.podIPs to forward to")]
    NoIp(String),
    #[error(transparent)]
    Ports(#[from] PortsError),
    #[error("Upgrade request required: port-forward is served as a WebSocket upgrade ({PROTOCOL})")]
    NotUpgrade,
    #[error("requested protocol(s) are not supported: {0:?}; supports [{PROTOCOL:?}]")]
    Protocol(Vec<String>),
}

/// Where a port-forward goes: the pod (its uid names it in error messages), its IP and the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) uid: String,
    pub(super) ip: IpAddr,
    pub(super) ports: Vec<u16>,
}

/// The ports of `?ports=80,8080` (values may also repeat: `?ports=80&ports=8080`), as the
/// kubelet parses them.
pub(super) fn parse_ports(values: &[&str]) -> Result<Vec<u16>, PortsError> {
    if values.is_empty() {
        return Err(PortsError::Missing);
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err(PortsError::Empty);
        }
        for part in value.split(',') {
            match part.parse::<u16>() {
                Ok(0) => return Err(PortsError::Zero(part.to_string())),
                Ok(port) => ports.push(port),
                Err(_) => return Err(PortsError::Unparsable(part.to_string())),
            }
        }
    }
    if ports.len() > MAX_PORTS {
        return Err(PortsError::TooMany(ports.len()));
    }
    Ok(ports)
}

/// Where a port-forward to `pod` goes, or why it cannot: the pod must run and have an IP.
pub(super) fn target(pod: &Value, ports: &[&str]) -> Result<Target, Refusal> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    // A real API server gives every pod a phase, Pending until it runs.
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(Refusal::NotRunning(phase.to_string()));
    }
    let ip = pod["status"]["podIP"]
        .as_str()
        .or_else(|| pod["status"]["podIPs"][0]["ip"].as_str())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| Refusal::NoIp(name.to_string()))?;
    let ports = parse_ports(ports)?;
    Ok(Target { uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(), ip, ports })
}

/// The text a kubelet writes on a port's error channel when the pod's port cannot be reached.
pub(super) fn forward_error(port: u16, uid: &str, error: &std::io::Error) -> String {
    let why = match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => error.to_string(),
    };
    format!(
        "error forwarding port {port} to pod {uid}, uid : failed to connect to localhost:{port} inside namespace \
         {uid:?}: {why}"
    )
}

/// Port `index`'s data channel; its error channel is the next one.
fn data_channel(index: usize) -> u8 {
    // parse_ports keeps index below MAX_PORTS, so 2 * index + 1 fits a byte.
    u8::try_from(2 * index).unwrap_or(u8::MAX - 1)
}

/// A binary frame: the channel byte, then the payload.
fn frame(channel: u8, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(payload);
    Message::Binary(Bytes::from(bytes))
}

/// The port index and payload of a client frame on a data channel; `None` for anything else
/// (error channels are the server's to write, empty frames carry nothing).
fn client_data(frame: &[u8]) -> Option<(usize, &[u8])> {
    let (&channel, payload) = frame.split_first()?;
    (channel % 2 == 0 && !payload.is_empty()).then_some((usize::from(channel / 2), payload))
}

/// The answer to `GET .../pods/{name}/portforward`: a refusal, or the upgrade to a session.
pub(super) fn response(
    shared: Shared,
    namespace: &str,
    name: &str,
    uri: &Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let pod = shared.lock().objects.get(&(Kind::Pod, namespace.to_string(), name.to_string())).cloned();
    let Some(pod) = pod else { return object_not_found(Kind::Pod, name) };
    let pairs: Vec<(String, String)> = Query::try_from_uri(uri).map(|Query(pairs)| pairs).unwrap_or_default();
    let ports: Vec<&str> = pairs.iter().filter(|(key, _)| key == "ports").map(|(_, value)| value.as_str()).collect();
    let refuse = |refusal: Refusal| status_response(StatusCode::BAD_REQUEST, "BadRequest", &refusal.to_string());
    let target = match target(&pod, &ports) {
        Ok(target) => target,
        Err(refusal) => return refuse(refusal),
    };
    let Ok(upgrade) = upgrade else { return refuse(Refusal::NotUpgrade) };
    let offered: Vec<String> =
        upgrade.requested_protocols().filter_map(|p| p.to_str().ok()).map(str::to_string).collect();
    // A client that names no subprotocol gets the same binary channels, as from a kubelet.
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
        return refuse(Refusal::Protocol(offered));
    }
    upgrade.protocols([PROTOCOL]).on_upgrade(move |socket| session(socket, shared, target))
}

/// What a pod's side of a port sends the session.
#[derive(Debug)]
enum FromPod {
    Data(usize, Bytes),
    /// The pod closed the connection (or it broke): the port is done.
    Closed(usize),
}

/// One port-forward: the ports announced, a connection to each, bytes both ways until every
/// pod connection ends (then the WebSocket closes) or the client goes (then the connections close).
async fn session(mut socket: WebSocket, shared: Shared, target: Target) {
    let Some(mut ports) = open_ports(&mut socket, &shared, &target).await else { return };
    if relay(&mut socket, &mut ports).await {
        close(socket).await;
    }
    // Dropping `ports` aborts its tasks: the pod connections close.
}

/// The open side of a session: a sender per port to the pod (`None` once the port is done), what
/// the pods send, and the tasks that copy.
struct Ports {
    to_pod: Vec<Option<mpsc::UnboundedSender<Bytes>>>,
    from_pods: mpsc::Receiver<FromPod>,
    tasks: JoinSet<()>,
}

/// Announces the ports and connects to each; a port whose pod side refuses gets the kubelet's
/// error on its error channel. `None` when the client is gone.
async fn open_ports(socket: &mut WebSocket, shared: &Shared, target: &Target) -> Option<Ports> {
    // The client checks each channel's first frame for its port before it takes data.
    for (index, port) in target.ports.iter().enumerate() {
        let data = data_channel(index);
        for channel in [data, data + 1] {
            socket.send(frame(channel, &port.to_le_bytes())).await.ok()?;
        }
    }
    let (events, from_pods) = mpsc::channel::<FromPod>(16);
    let mut ports = Ports { to_pod: Vec::new(), from_pods, tasks: JoinSet::new() };
    for (index, &port) in target.ports.iter().enumerate() {
        match connect(SocketAddr::new(target.ip, port)).await {
            Ok(stream) => {
                shared.lock().port_forwards += 1;
                let (read, write) = stream.into_split();
                // Unbounded: the session never waits on a pod that does not read, so bytes from
                // the pod keep flowing while it writes.
                let (tx, rx) = mpsc::unbounded_channel();
                ports.tasks.spawn(write_to_pod(write, rx));
                ports.tasks.spawn(read_from_pod(index, read, events.clone()));
                ports.to_pod.push(Some(tx));
            }
            Err(error) => {
                ports.to_pod.push(None);
                let message = forward_error(port, &target.uid, &error);
                socket.send(frame(data_channel(index) + 1, message.as_bytes())).await.ok()?;
            }
        }
    }
    Some(ports)
}

/// Copies bytes between the client and the pods until every pod connection is done (`true`: the
/// session closes the WebSocket) or the client goes (`false`).
async fn relay(socket: &mut WebSocket, ports: &mut Ports) -> bool {
    let mut open = ports.to_pod.iter().filter(|tx| tx.is_some()).count();
    while open > 0 {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some((index, payload)) = client_data(&bytes)
                        && let Some(Some(tx)) = ports.to_pod.get(index)
                    {
                        let _ = tx.send(Bytes::copy_from_slice(payload));
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // Flushes the answer to the client's Close.
                    let _ = socket.send(Message::Close(None)).await;
                    return false;
                }
                Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            Some(event) = ports.from_pods.recv() => match event {
                FromPod::Data(index, bytes) => {
                    if socket.send(frame(data_channel(index), &bytes)).await.is_err() {
                        return false;
                    }
                }
                FromPod::Closed(index) => {
                    ports.to_pod[index] = None;
                    open -= 1;
                }
            },
        }
    }
    true
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn read_from_pod(index: usize, mut read: OwnedReadHalf, events: mpsc::Sender<FromPod>) {
    let mut buffer = vec![0u8; 32 * 1024];
    while let Ok(count @ 1..) = read.read(&mut buffer).await {
        if events.send(FromPod::Data(index, Bytes::copy_from_slice(&buffer[..count]))).await.is_err() {
            return;
        }
    }
    let _ = events.send(FromPod::Closed(index)).await;
}

/// Writes what the client sends to the pod; dropping the write half when the port is done
/// tells the pod so.
async fn write_to_pod(mut write: OwnedWriteHalf, mut from_client: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(bytes) = from_client.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Ends the session with a Close, and waits a little for the client's, so it sees a clean end.
async fn close(mut socket: WebSocket) {
    if socket.send(Message::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_parse_as_the_kubelet_parses_them() {
        assert_eq!(parse_ports(&["80,1234"]), Ok(vec![80, 1234]));
        assert_eq!(parse_ports(&["80", "81"]), Ok(vec![80, 81]));
        assert_eq!(parse_ports(&[]), Err(PortsError::Missing));
        assert_eq!(parse_ports(&[""]), Err(PortsError::Empty));
        assert_eq!(parse_ports(&["80,web"]), Err(PortsError::Unparsable("web".into())));
        assert_eq!(parse_ports(&["70000"]), Err(PortsError::Unparsable("70000".into())));
        assert_eq!(parse_ports(&["0"]), Err(PortsError::Zero("0".into())));
        let many = vec!["1"; MAX_PORTS + 1].join(",");
        assert_eq!(parse_ports(&[&many]), Err(PortsError::TooMany(MAX_PORTS + 1)));
    }

    #[test]
    fn only_a_running_pod_with_an_ip_is_a_target() {
        let pod = |status: Value| json!({"metadata": {"name": "web-1", "uid": "u-1"}, "status": status});
        let running = pod(json!({"phase": "Running", "podIP": "10.42.0.7"}));
        assert_eq!(
            target(&running, &["8080"]),
            Ok(Target { uid: "u-1".into(), ip: "10.42.0.7".parse().unwrap(), ports: vec![8080] })
        );
        let dual = pod(json!({"phase": "Running", "podIPs": [{"ip": "fd00::7"}, {"ip": "10.42.0.7"}]}));
        assert_eq!(target(&dual, &["80"]).map(|t| t.ip), Ok("fd00::7".parse().unwrap()));
        assert_eq!(
            target(&pod(json!({"phase": "Succeeded"})), &["80"]).unwrap_err().to_string(),
            "unable to forward port because pod is not running. Current status=Succeeded"
        );
        assert_eq!(target(&pod(json!({})), &["80"]), Err(Refusal::NotRunning("Pending".into())));
        assert_eq!(target(&pod(json!({"phase": "Running"})), &["80"]), Err(Refusal::NoIp("web-1".into())));
        assert_eq!(target(&running, &[]), Err(Refusal::Ports(PortsError::Missing)));
    }

    #[test]
    fn frames_lead_with_their_channel() {
        assert_eq!(frame(2, &7431u16.to_le_bytes()), Message::Binary(Bytes::from_static(&[2, 0x07, 0x1d])));
        assert_eq!(client_data(&[2, b'h', b'i']), Some((1, &b"hi"[..])));
        assert_eq!(client_data(&[3, b'x']), None, "error channels are the server's");
        assert_eq!(client_data(&[0]), None);
        assert_eq!(client_data(&[]), None);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            forward_error(7431, "u-1", &refused),
            r#"error forwarding port 7431 to pod u-1, uid : failed to connect to localhost:7431 inside namespace "u-1": connection refused"#
        );
    }
}
