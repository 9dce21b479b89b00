//! rotel, a real OpenTelemetry collector from PyPI, as the OTLP receiver of end-to-end tests:
//! finding it in the workspace's venv or pip-installing it there once, running it on loopback
//! with its detailed debug log of metrics, and reading that log back as resources, metrics and
//! data points ([`parse`], pure).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{Output, Process, Spawn};
use crate::{Error, Result, free_port, wait_for, wait_for_async};

/// The rotel release the parser was written against (its debug output format).
pub const ROTEL_REQUIREMENT: &str = "rotel==0.0.1a15";

/// How long rotel may take to listen on both ports.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The venv rotel lives in: `<workspace>/.venv`, as `cargo xtask chart` makes it.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("/")).join(".venv")
}

/// Where rotel is installed when the workspace's venv lacks it: `<workspace>/target/rotel-venv`.
fn own_venv() -> PathBuf {
    venv().parent().unwrap_or(Path::new("/")).join("target/rotel-venv")
}

fn find_rotel(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.is_file())
}

fn succeeded(command: &mut Command) -> bool {
    command.status().is_ok_and(|status| status.success())
}

/// The `rotel-agent` binary: the workspace's venv's, else pip-installed once into a venv of its
/// own under `target/`.
pub fn rotel_binary() -> Result<PathBuf> {
    static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = found.as_ref() {
        return Ok(path.clone());
    }
    if let Some(path) = find_rotel(&venv()) {
        *found = Some(path.clone());
        return Ok(path);
    }
    // Never create or change the workspace's venv: `cargo xtask chart` may be making it at this
    // moment in a parallel CI stage (CI once lost the chart's packages that way).
    let venv = own_venv();
    if let Some(path) = find_rotel(&venv) {
        *found = Some(path.clone());
        return Ok(path);
    }
    eprintln!("installing {ROTEL_REQUIREMENT} into {} (once)", venv.display());
    let cannot = |why: String| Error::Install { what: ROTEL_REQUIREMENT.to_string(), why };
    let python = venv.join("bin/python");
    if !python.is_file()
        && !succeeded(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        && !succeeded(Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv))
    {
        return Err(cannot(format!("cannot create {}: install python3 and python3-venv", venv.display())));
    }
    let installed = succeeded(Command::new(&python).args(["-m", "pip", "install", "--quiet", ROTEL_REQUIREMENT]))
        || succeeded(Command::new("python3").args(["-m", "pip", "--python"]).arg(&python).args([
            "install",
            "--quiet",
            ROTEL_REQUIREMENT,
        ]));
    if !installed {
        return Err(cannot(format!("pip needs to reach PyPI to install into {}", venv.display())));
    }
    let path = find_rotel(&venv).ok_or_else(|| cannot("installed, but it has no rotel-agent".to_string()))?;
    *found = Some(path.clone());
    Ok(path)
}

/// A running rotel that prints every metric it receives; killed when dropped.
#[derive(Debug)]
pub struct Rotel {
    process: Process,
    /// Its stdout: the detailed debug log of the metrics received.
    pub output: PathBuf,
    /// Its own log (start-up errors).
    pub log: PathBuf,
    /// The OTLP/gRPC and OTLP/HTTP ports on 127.0.0.1.
    pub grpc: u16,
    pub http: u16,
}

impl Rotel {
    /// Starts rotel on two free loopback ports and waits until both listen.
    pub fn start(dir: &Path) -> Result<Rotel> {
        Self::start_on(dir, free_port()?, free_port()?)
    }

    /// Starts rotel on the given ports (a receiver that comes back on the same address) and waits
    /// until both listen, blocking the calling thread; on a tokio runtime, see
    /// [`Rotel::start_on_async`].
    pub fn start_on(dir: &Path, grpc: u16, http: u16) -> Result<Rotel> {
        let mut rotel = Self::spawn(dir, grpc, http)?;
        let listening = wait_for("rotel to listen", LISTEN_TIMEOUT, || rotel.listened());
        rotel.ready(listening)
    }

    /// [`Rotel::start_on`] on a tokio runtime: waits without blocking it.
    pub async fn start_on_async(dir: &Path, grpc: u16, http: u16) -> Result<Rotel> {
        let mut rotel = Self::spawn(dir, grpc, http)?;
        let listening =
            wait_for_async("rotel to listen", LISTEN_TIMEOUT, || std::future::ready(rotel.listened())).await;
        rotel.ready(listening)
    }

    /// One poll of the wait to listen: `None` until both ports listen, then `Ok`; `Err` when
    /// rotel has exited.
    fn listened(&mut self) -> Option<Result<()>> {
        match self.listening() {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(error) => Some(Err(error)),
        }
    }

    /// This rotel once the wait to listen has ended; its log on stderr when it timed out.
    fn ready(self, listening: Result<Result<()>>) -> Result<Rotel> {
        match listening {
            Ok(result) => result.map(|()| self),
            Err(timeout) => {
                eprintln!("rotel's log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
                Err(timeout)
            }
        }
    }

    /// Starts rotel without waiting for it to listen.
    pub fn spawn(dir: &Path, grpc: u16, http: u16) -> Result<Rotel> {
        let output = dir.join(format!("rotel-{grpc}.out"));
        let log = dir.join(format!("rotel-{grpc}.log"));
        let process = Spawn::new("rotel", rotel_binary()?)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole", "--debug-log", "metrics", "--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(dir.join(format!("rotel-{grpc}.pid")))
            .arg("--log-file")
            .arg(&log)
            .output(Output::Stdout(output.clone()))
            .start()?;
        Ok(Rotel { process, output, log, grpc, http })
    }

    /// Whether both ports accept connections; an error once rotel has exited.
    pub fn listening(&mut self) -> Result<bool> {
        if let Some(status) = self.process.try_status() {
            return Err(Error::Failed {
                command: "rotel start".to_string(),
                status,
                stderr: std::fs::read_to_string(&self.log).unwrap_or_default(),
            });
        }
        let accepts = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        Ok(accepts(self.grpc) && accepts(self.http))
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedResource> {
        parse(&std::fs::read_to_string(&self.output).unwrap_or_default())
    }

    /// Forgets what was received so far (the next check sees only newer exports).
    pub fn forget_received(&self) -> Result<()> {
        std::fs::write(&self.output, "").map_err(|source| Error::File {
            action: "emptying",
            path: self.output.clone(),
            source,
        })
    }
}

/// One `ResourceMetrics` as rotel's detailed debug log prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedResource {
    pub attributes: Vec<(String, String)>,
    pub metrics: Vec<ReceivedMetric>,
}

impl ReceivedResource {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        lookup(&self.attributes, key)
    }

    pub fn metric(&self, name: &str) -> Option<&ReceivedMetric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedMetric {
    pub name: String,
    pub unit: String,
    /// `Gauge`, `Sum`, `Histogram`.
    pub data_type: String,
    pub points: Vec<ReceivedPoint>,
}

/// One `NumberDataPoints` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedPoint {
    pub attributes: Vec<(String, String)>,
    pub value: Option<f64>,
    /// Every line of the point, trimmed (timestamps included).
    pub text: String,
}

impl ReceivedPoint {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        lookup(&self.attributes, key)
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `     -> key: Str(value)` -> (key, value); other types keep their wrapper (`Int(3)`).
fn arrow_line(line: &str) -> Option<(String, String)> {
    let (key, value) = line.trim().strip_prefix("-> ")?.split_once(": ")?;
    let value = value.strip_prefix("Str(").and_then(|v| v.strip_suffix(')')).unwrap_or(value);
    Some((key.to_string(), value.to_string()))
}

/// Where an attribute line belongs.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    Resource,
    Descriptor,
    Point,
    Other,
}

/// Reads rotel's `--debug-log metrics --debug-log-verbosity detailed` output.
pub fn parse(text: &str) -> Vec<ReceivedResource> {
    let mut resources: Vec<ReceivedResource> = Vec::new();
    let mut section = Section::Other;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceMetrics #") {
            resources.push(ReceivedResource::default());
            section = Section::Other;
            continue;
        }
        let Some(resource) = resources.last_mut() else { continue };
        if trimmed == "Resource attributes:" {
            section = Section::Resource;
        } else if trimmed.starts_with("ScopeMetrics #") {
            section = Section::Other;
        } else if trimmed.starts_with("Metric #") {
            resource.metrics.push(ReceivedMetric::default());
            section = Section::Descriptor;
        } else if trimmed.starts_with("NumberDataPoints #") {
            if let Some(metric) = resource.metrics.last_mut() {
                metric.points.push(ReceivedPoint::default());
            }
            section = Section::Point;
        } else if section == Section::Resource {
            resource.attributes.extend(arrow_line(line));
        } else if let Some(metric) = resource.metrics.last_mut() {
            match section {
                Section::Descriptor => match arrow_line(line) {
                    Some((key, value)) if key == "Name" => metric.name = value,
                    Some((key, value)) if key == "Unit" => metric.unit = value,
                    Some((key, value)) if key == "DataType" => metric.data_type = value,
                    _ => {}
                },
                Section::Point => {
                    if let Some(point) = metric.points.last_mut() {
                        point.text.push_str(trimmed);
                        point.text.push('\n');
                        if let Some(value) = trimmed.strip_prefix("Value: ") {
                            point.value = value.trim().parse().ok();
                        } else if let Some(pair) = arrow_line(line) {
                            point.attributes.push(pair);
                        }
                    }
                }
                Section::Resource | Section::Other => {}
            }
        }
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rotel 0.0.1a15's print of two resources bakery-demo's collector exported (`bakery-demo
    /// --otlp-endpoint`), cut to one metric each and two of the CPU's points: the collector's
    /// own resource with the verdict, and a node's.
    const RECEIVED: &str = "\
ResourceMetrics #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(bakery)
     -> telemetry.sdk.version: Str(0.33.1)
     -> k8s.cluster.name: Str(bakery-demo)
     -> telemetry.sdk.name: Str(opentelemetry)
     -> service.instance.id: Str(bakery-collector)
     -> telemetry.sdk.language: Str(rust)
ScopeMetrics #0
ScopeMetrics SchemaURL: 
InstrumentationScope bakery-collector 
Metric #3
Descriptor:
     -> Name: bakery.hog.active
     -> Description: 1 while a hog verdict is in force, by node and cause
     -> Unit: {verdict}
     -> DataType: Gauge
NumberDataPoints #0
Data point attributes:
     -> bakery.hog.cause: Str(ingress-concentration)
     -> bakery.workload.name: Str(wordpress)
     -> k8s.namespace.name: Str(wordpress)
     -> k8s.node.name: Str(master-02)
StartTimestamp: 1795615405789762510
Timestamp: 1795615406801604107
Value: 1
ResourceMetrics #0
Resource SchemaURL: 
Resource attributes:
     -> telemetry.sdk.language: Str(rust)
     -> service.name: Str(bakery)
     -> k8s.node.name: Str(worker-02)
     -> service.instance.id: Str(worker-02)
     -> telemetry.sdk.version: Str(0.33.1)
     -> k8s.cluster.name: Str(bakery-demo)
     -> host.name: Str(worker-02)
     -> telemetry.sdk.name: Str(opentelemetry)
ScopeMetrics #0
ScopeMetrics SchemaURL: 
InstrumentationScope bakery-collector 
Metric #0
Descriptor:
     -> Name: system.cpu.time
     -> Description: CPU time per logical CPU and mode (from /proc/stat jiffies)
     -> Unit: s
     -> DataType: Sum
     -> IsMonotonic: true
     -> AggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
NumberDataPoints #0
Data point attributes:
     -> cpu.logical_number: Int(0)
     -> cpu.mode: Str(system)
StartTimestamp: 1795615405789049635
Timestamp: 1795615407786352690
Value: 1348.57
NumberDataPoints #1
Data point attributes:
     -> cpu.logical_number: Int(0)
     -> cpu.mode: Str(iowait)
StartTimestamp: 1795615405789049635
Timestamp: 1795615407786352690
Value: 31.78
";

    #[test]
    fn resources_metrics_and_points_are_read_with_their_attributes() {
        let resources = parse(RECEIVED);
        assert_eq!(resources.len(), 2);
        let collector = &resources[0];
        assert_eq!(collector.attribute("service.instance.id"), Some("bakery-collector"));
        assert_eq!(collector.attribute("k8s.cluster.name"), Some("bakery-demo"));
        let hog = collector.metric("bakery.hog.active").unwrap();
        assert_eq!((hog.unit.as_str(), hog.data_type.as_str()), ("{verdict}", "Gauge"));
        assert_eq!(hog.points.len(), 1);
        let point = &hog.points[0];
        assert_eq!(point.attribute("k8s.node.name"), Some("master-02"));
        assert_eq!(point.attribute("bakery.hog.cause"), Some("ingress-concentration"));
        assert_eq!(point.value, Some(1.0));
        assert!(point.text.contains("Timestamp: 1795615406801604107"), "{}", point.text);

        let node = &resources[1];
        assert_eq!(
            (node.attribute("k8s.node.name"), node.attribute("host.name")),
            (Some("worker-02"), Some("worker-02"))
        );
        assert_eq!(node.attribute("cpu.mode"), None, "point attributes stay on their points");
        let cpu = node.metric("system.cpu.time").unwrap();
        assert_eq!((cpu.unit.as_str(), cpu.data_type.as_str()), ("s", "Sum"));
        let values: Vec<(Option<&str>, Option<&str>, Option<f64>)> =
            cpu.points.iter().map(|p| (p.attribute("cpu.logical_number"), p.attribute("cpu.mode"), p.value)).collect();
        assert_eq!(
            values,
            [(Some("Int(0)"), Some("system"), Some(1348.57)), (Some("Int(0)"), Some("iowait"), Some(31.78))]
        );
    }

    #[test]
    fn text_before_the_first_resource_and_partial_prints_are_harmless() {
        assert!(parse("INFO Starting Rotel.\n").is_empty());
        let cut_off =
            "ResourceMetrics #0\nResource attributes:\n     -> k8s.node.name: Str(n1)\nMetric #0\nDescriptor:\n";
        let resources = parse(cut_off);
        assert_eq!(resources[0].attribute("k8s.node.name"), Some("n1"));
        assert_eq!(resources[0].metrics, [ReceivedMetric::default()]);
    }
}
