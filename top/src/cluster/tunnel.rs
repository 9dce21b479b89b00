//! One Kubernetes port-forward per gRPC connection to the collector's pod, finding the pod again when the forward fails (a restart, a rollout).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use tokio::io::DuplexStream;

use super::pick;

/// Where the forwards go: a Service's ready pod, found through the API.
#[derive(Clone)]
pub struct Tunnel {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    namespace: String,
    service: Service,
    selector: String,
    target: IntOrString,
    /// What the header shows: the context and the Service.
    describe: String,
    /// The pod and container port of the last forward that opened; found again when a forward fails.
    pod: Mutex<Option<(String, u16)>>,
    /// The last failure, kept for the message of a failed connection (a forward that opened can still
    /// fail on the pod's side, and then only the error channel says why).
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel").field("to", &self.inner.describe).finish()
    }
}

impl PartialEq for Tunnel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Tunnel {}

/// The connection a forward yields, as hyper reads and writes it.
pub type Stream = hyper_util::rt::TokioIo<DuplexStream>;
type Opening = Pin<Box<dyn Future<Output = std::io::Result<Stream>> + Send>>;

impl Tunnel {
    /// A tunnel to `service`'s pods, checking now that one is ready, so that a wrong release or a
    /// collector that is down is reported before anything else is tried.
    pub async fn new(client: kube::Client, service: Service, describe: String) -> Result<Tunnel, super::ClusterError> {
        let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let target = pick::grpc_target(&service)?;
        let selector = pick::pod_selector(&service)?;
        let inner = Inner {
            client,
            namespace,
            service,
            selector,
            target,
            describe,
            pod: Mutex::new(None),
            last_error: Mutex::new(None),
        };
        let pod = inner.find_pod().await?;
        *inner.pod.lock().expect("pod lock") = Some(pod);
        Ok(Tunnel { inner: Arc::new(inner) })
    }

    /// The context and Service, for the header and messages.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// Why the last forward failed, if one did.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().expect("error lock").clone()
    }

    /// A connector for tonic's `Endpoint::connect_with_connector`: each connection is a new forward.
    pub fn connector(
        &self,
    ) -> impl tower::Service<tonic::codegen::http::Uri, Response = Stream, Error = std::io::Error, Future = Opening> + use<>
    {
        let tunnel = self.clone();
        tower::service_fn(move |_uri: tonic::codegen::http::Uri| -> Opening {
            let tunnel = tunnel.clone();
            Box::pin(async move { tunnel.open().await.map(hyper_util::rt::TokioIo::new) })
        })
    }

    /// Opens a forward to the pod; if that fails, finds the ready pod again and tries once more.
    pub async fn open(&self) -> std::io::Result<DuplexStream> {
        let inner = &self.inner;
        let mut failure = String::new();
        for _ in 0..2 {
            let cached = inner.pod.lock().expect("pod lock").clone();
            let (pod, port) = match cached {
                Some(pod) => pod,
                None => match inner.find_pod().await {
                    Ok(pod) => pod,
                    Err(error) => {
                        failure = error.to_string();
                        break;
                    }
                },
            };
            let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
            match pods.portforward(&pod, &[port]).await {
                Ok(mut forward) => {
                    *inner.pod.lock().expect("pod lock") = Some((pod, port));
                    // An earlier forward's failure says nothing about this one.
                    *inner.last_error.lock().expect("error lock") = None;
                    let stream = forward.take_stream(port).expect("a forward has a stream for each port it asked for");
                    let errors = forward.take_error(port);
                    let tunnel = self.clone();
                    // The forward runs on its own task; keep it and note what its error channel says.
                    tokio::spawn(async move {
                        let message = match errors {
                            Some(errors) => errors.await,
                            None => None,
                        };
                        if let Some(message) = &message {
                            tunnel.note(format!("port-forward to {}: {message}", tunnel.pod_name()));
                        }
                        // The pod's own message says why; the WebSocket's end after it only echoes it.
                        if let (None, Err(error)) = (message, forward.join().await) {
                            tunnel.note(format!("port-forward to {}: {error}", tunnel.pod_name()));
                        }
                    });
                    return Ok(stream);
                }
                Err(error) => {
                    failure =
                        format!("port-forward to pod {}/{pod}: {}", inner.namespace, bakery_cli::error_chain(&error));
                    *inner.pod.lock().expect("pod lock") = None;
                }
            }
        }
        self.note(failure.clone());
        Err(std::io::Error::other(failure))
    }

    fn note(&self, message: String) {
        *self.inner.last_error.lock().expect("error lock") = Some(message);
    }

    fn pod_name(&self) -> String {
        let pod = self.inner.pod.lock().expect("pod lock");
        pod.as_ref().map_or_else(|| "?".into(), |(name, _)| format!("{}/{name}", self.inner.namespace))
    }
}

impl Inner {
    async fn find_pod(&self) -> Result<(String, u16), super::ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let listed = pods.list(&ListParams::default().labels(&self.selector)).await.map_err(|error| {
            super::ClusterError::api(format!("list the pods of {}", pick::full_name(&self.service.metadata)), &error)
        })?;
        Ok(pick::ready_pod(&self.service, &listed.items, &self.target)?)
    }
}
