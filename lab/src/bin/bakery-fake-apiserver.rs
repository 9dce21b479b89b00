//! `bakery-fake-apiserver`: the Kubernetes API test double ([`bakery_lab::kube_double`]) as a
//! process, for demos and end-to-end runs without a cluster, and for `kubectl`. Serves Namespaces,
//! Nodes, Pods, Services, Secrets, EndpointSlices, ReplicaSets and (when the state installs them)
//! MetalLB's kinds from a JSON state file (format in the module docs), re-read when it changes;
//! denies the resources the state forbids with 403, and forwards pod ports over a WebSocket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bakery_lab::kube_double::{KubeDouble, follow_state_file};
use clap::Parser;

/// A fake Kubernetes API server (discovery, list/watch with resourceVersion, bookmarks and 410
/// Gone, selectors, server-side tables; kubectl works against it) whose objects come from a JSON
/// state file. Resources the state lists under "forbidden" answer 403 Forbidden; pod port-forward
/// (the kube client's WebSocket, v4.channel.k8s.io) connects to the pod's IP and port. POST
/// /bakery/expire forces every watcher to relist.
#[derive(Debug, Parser)]
#[command(name = "bakery-fake-apiserver", version, about)]
struct Cli {
    /// Address to serve plain HTTP on (port 0: one the OS picks, see --ready-file).
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "ADDR")]
    listen: SocketAddr,

    /// The cluster state: {"apis": ["metallb.io/v1beta1"], "nodes": [...], "pods": [...],
    /// "services": [...], "secrets": [...], "endpointslices": [...], "servicel2statuses": [...],
    /// ..., "forbidden": ["secrets"]}, one array per kind keyed by its plural, and the resources
    /// every request is denied.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,

    /// Write a kubeconfig pointing at this server here (for bakery-collector --kubeconfig).
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,

    /// Write the bound address here once serving.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let double = Arc::new(KubeDouble::start(cli.listen).await?);
    let _follower = follow_state_file(double.clone(), cli.state.clone()).await;
    if let Some(path) = &cli.kubeconfig_out {
        std::fs::write(path, double.kubeconfig())?;
    }
    if let Some(path) = &cli.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", double.addr()))?;
        std::fs::rename(&tmp, path)?;
    }
    eprintln!("bakery-fake-apiserver: serving {} from {}", double.url(), cli.state.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
