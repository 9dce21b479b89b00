//! TokenReviews through the collector's own client (`POST
//! /apis/authentication.k8s.io/v1/tokenreviews`, which needs `create` on `tokenreviews`), and the
//! pod watch for reviews that name a pod but no node.

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use ::kube::runtime::reflector::{ObjectRef, Store};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::auth::TokenReviewer;
use crate::auth::service_account::PodRef;

/// Reviews tokens with the collector's client; finds pods in its pod watch.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    client: Client,
    pods: Store<Pod>,
}

impl std::fmt::Debug for KubeTokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTokenReviewer").finish_non_exhaustive()
    }
}

impl KubeTokenReviewer {
    pub fn new(client: Client, pods: Store<Pod>) -> Self {
        KubeTokenReviewer { client, pods }
    }
}

#[tonic::async_trait]
impl TokenReviewer for KubeTokenReviewer {
    async fn review(&self, token: &str, audience: &str) -> Result<TokenReviewStatus, String> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: Some(vec![audience.to_string()]) },
            ..TokenReview::default()
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) => Ok(answer.status.unwrap_or_default()),
            Err(::kube::Error::Api(status)) => {
                Err(format!("the API server answered {} {}", status.code, status.message))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    fn pod_node(&self, pod: &PodRef<'_>) -> Option<String> {
        let matches = |p: &Pod| {
            p.metadata.uid.as_deref() == Some(pod.uid) && p.metadata.namespace.as_deref() == Some(pod.namespace)
        };
        let found = match pod.name {
            Some(name) => self.pods.get(&ObjectRef::new(name).within(pod.namespace)).filter(|p| matches(p)),
            None => None,
        };
        // By uid when the name is missing, or names a newer pod of the same name.
        let found = found.or_else(|| self.pods.state().into_iter().find(|p| matches(p)))?;
        found.spec.as_ref()?.node_name.clone()
    }
}
