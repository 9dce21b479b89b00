//! The watches: one `kube::runtime::watcher` per kind for the whole cluster, each feeding a
//! reflector store. The watcher relists by itself when its resourceVersion is too old (410 Gone)
//! and backs off on errors, so the stores converge on the cluster's state without help.

use std::collections::HashMap;

use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Api, Client};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::task::JoinHandle;

use super::mapping::{node_role, pod_meta, ready_endpoints};
use super::{ClusterView, KubeMode};
use crate::error::{Error, Result};

/// The running watches and their stores; the tasks stop when this is dropped.
#[derive(Debug)]
pub struct KubeWatch {
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeWatch {
    /// Connects as `mode` says and starts the watches. `Ok(None)` when there is no cluster to
    /// talk to (disabled, or nothing to infer a configuration from).
    pub async fn start(mode: &KubeMode) -> Result<Option<KubeWatch>> {
        let config = match mode {
            KubeMode::Disabled => return Ok(None),
            KubeMode::Kubeconfig(path) => {
                let kubeconfig = ::kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
                ::kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| Error::Config(format!("unusable kubeconfig {}: {e}", path.display())))?
            }
            KubeMode::Infer => match ::kube::Config::infer().await {
                Ok(config) => config,
                Err(error) => {
                    tracing::warn!(%error, "no Kubernetes configuration found; running without cluster knowledge");
                    return Ok(None);
                }
            },
        };
        tracing::info!(cluster = %config.cluster_url, "watching pods, nodes and endpointslices");
        let client = Client::try_from(config).map_err(|e| Error::Config(format!("cannot build a client: {e}")))?;
        Ok(Some(KubeWatch::with_client(client)))
    }

    /// Starts the three watches on `client`.
    pub fn with_client(client: Client) -> KubeWatch {
        let (pods, pods_task) = spawn_reflector(Api::<Pod>::all(client.clone()));
        let (nodes, nodes_task) = spawn_reflector(Api::<Node>::all(client.clone()));
        let (slices, slices_task) = spawn_reflector(Api::<EndpointSlice>::all(client));
        KubeWatch { pods, nodes, slices, tasks: vec![pods_task, nodes_task, slices_task] }
    }

    /// One look at the stores, mapped.
    pub fn view(&self) -> ClusterView {
        let pods_by_uid: HashMap<_, _> =
            self.pods.state().iter().filter_map(|pod| pod_meta(pod)).map(|meta| (meta.uid.clone(), meta)).collect();
        let roles = self
            .nodes
            .state()
            .iter()
            .filter_map(|node| node.metadata.name.clone().map(|name| (name, node_role(node))))
            .collect();
        let slices: Vec<EndpointSlice> = self.slices.state().iter().map(|s| (**s).clone()).collect();
        let endpoints = ready_endpoints(&slices, &pods_by_uid);
        ClusterView { pods_by_uid, roles, endpoints, ..ClusterView::default() }
    }
}

fn spawn_reflector<K>(api: Api<K>) -> (Store<K>, JoinHandle<()>)
where
    K: ::kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let kind = K::kind(&()).into_owned();
    // Bookmarks keep the resourceVersion fresh on quiet clusters, so a reconnect rarely relists.
    let config = watcher::Config::default();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(kind = %kind, %error, "watch failed; retrying with backoff");
            }
        }
    });
    (reader, task)
}
