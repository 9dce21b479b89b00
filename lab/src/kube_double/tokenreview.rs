//! TokenReview, as the API server answers `POST /apis/authentication.k8s.io/v1/tokenreviews` for a
//! service-account token: `201 Created` with the review and its `status`. A token the state lists is
//! authenticated when its audiences meet the requested ones (none requested: the API server's
//! own, [`API_SERVER_AUDIENCES`]), and the status then carries the user and the audiences in
//! common; an unknown token or one for other audiences is `authenticated: false` (left out, as
//! Go's `omitempty` does) with an `error`. A review without a token is `400 BadRequest`.
//!
//! State file entries (`"tokenreviews": [...]`), one per token the cluster issued:
//!
//! ```json
//! {"token": "eyJhbGciOi...", "audiences": ["bakery"],
//!  "user": {"username": "system:serviceaccount:bakery:bakery-agent", "uid": "sa-uid",
//!           "groups": ["system:serviceaccounts", "system:serviceaccounts:bakery", "system:authenticated"],
//!           "extra": {"authentication.kubernetes.io/pod-name": ["bakery-agent-x7k2p"],
//!                     "authentication.kubernetes.io/pod-uid": ["6f1c..."],
//!                     "authentication.kubernetes.io/node-name": ["pi-2"]}}}
//! ```
//!
//! Kubernetes 1.30 and later put `node-name` (and `node-uid`) in a pod-bound token's extra; leave
//! them out to play an older cluster, where only the pod is named.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The API group and version.
pub const GROUP: &str = "authentication.k8s.io";
pub const VERSION: &str = "v1";
pub const GROUP_VERSION: &str = "authentication.k8s.io/v1";
/// The one path of the kind: TokenReviews are created, never stored or listed.
pub const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The resource, as paths and RBAC name it.
pub const PLURAL: &str = "tokenreviews";
/// The audiences a review without `spec.audiences` checks against: the API server's own (its
/// `--api-audiences`, by default the issuer).
pub const API_SERVER_AUDIENCES: [&str; 1] = ["https://kubernetes.default.svc.cluster.local"];

/// A token the cluster issued, as the state file lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The `UserInfo` the review answers: username, uid, groups, extra.
    #[serde(default)]
    pub user: Value,
}

impl IssuedToken {
    /// An entry of the state file, or why the API server could not have issued it.
    pub fn parse(entry: &Value) -> Result<IssuedToken, String> {
        let token: IssuedToken = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
        if token.token.is_empty() {
            return Err("no token".into());
        }
        if !token.user.is_object() || !token.user["username"].is_string() {
            return Err("user.username is not a string".into());
        }
        Ok(token)
    }
}

/// The discovery entry of `tokenreviews` (create only, cluster-scoped).
pub fn api_resource() -> Value {
    json!({"name": "tokenreviews", "singularName": "tokenreview", "namespaced": false, "kind": "TokenReview",
           "verbs": ["create"]})
}

/// The answer to a POSTed review `body`, given the tokens the cluster issued.
pub fn review(issued: &[IssuedToken], body: &[u8]) -> (StatusCode, Value) {
    let bad_request = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                   "reason": "BadRequest", "code": 400}),
        )
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(request @ Value::Object(_)) => request,
        Ok(_) => return bad_request("the request body is not a TokenReview object".into()),
        Err(error) => return bad_request(format!("the request body does not decode: {error}")),
    };
    for (field, expected) in [("kind", "TokenReview"), ("apiVersion", GROUP_VERSION)] {
        if let Some(given) = request.get(field)
            && given != expected
        {
            return bad_request(format!("{field} is {given}, not {expected:?}"));
        }
    }
    let spec = &request["spec"];
    let Some(token) = spec["token"].as_str().filter(|t| !t.is_empty()) else {
        return bad_request("token is required for TokenReview in authentication".into());
    };
    let requested: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|a| a.as_str().map(str::to_string)).collect(),
        _ => API_SERVER_AUDIENCES.iter().map(|a| a.to_string()).collect(),
    };
    let status = match issued.iter().find(|t| t.token == token) {
        None => {
            json!({"user": {}, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"})
        }
        Some(known) => {
            let common: Vec<&String> = known.audiences.iter().filter(|a| requested.contains(a)).collect();
            if common.is_empty() {
                json!({"user": {}, "error": format!(
                    "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
                    known.audiences, requested
                )})
            } else {
                json!({"authenticated": true, "user": known.user, "audiences": common})
            }
        }
    };
    let mut answer = json!({"kind": "TokenReview", "apiVersion": GROUP_VERSION,
                            "metadata": {"creationTimestamp": null}, "spec": spec, "status": status});
    if spec.is_null() {
        answer["spec"] = json!({});
    }
    (StatusCode::CREATED, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> Vec<IssuedToken> {
        let entry = json!({"token": "agent-pi-2", "audiences": ["bakery"],
                           "user": {"username": "system:serviceaccount:bakery:bakery-agent",
                                    "extra": {"authentication.kubernetes.io/node-name": ["pi-2"]}}});
        vec![IssuedToken::parse(&entry).unwrap()]
    }

    fn body(token: &str, audiences: &[&str]) -> Vec<u8> {
        json!({"kind": "TokenReview", "apiVersion": GROUP_VERSION, "spec": {"token": token, "audiences": audiences}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_review_authenticates_a_known_token_for_its_audience_only() {
        let (code, answer) = review(&issued(), &body("agent-pi-2", &["bakery"]));
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(answer["kind"], "TokenReview");
        assert_eq!(answer["status"]["authenticated"], true);
        assert_eq!(answer["status"]["audiences"], json!(["bakery"]));
        assert_eq!(answer["status"]["user"]["extra"]["authentication.kubernetes.io/node-name"], json!(["pi-2"]));
        assert_eq!(answer["spec"]["token"], "agent-pi-2", "the spec is echoed");

        // (token, requested audiences, error start): refused as a real server refuses
        let table: [(&str, &[&str], &str); 3] = [
            ("made-up", &["bakery"], "[invalid bearer token, square/go-jose"),
            ("agent-pi-2", &["vault"], "[invalid bearer token, token audiences [\"bakery\"] is invalid"),
            // no audience asked for: the API server's own, which the bakery token is not for
            (
                "agent-pi-2",
                &[],
                "[invalid bearer token, token audiences [\"bakery\"] is invalid for the target audiences [\"https://kubernetes.default.svc.cluster.local\"]",
            ),
        ];
        for (token, audiences, error) in table {
            let (code, answer) = review(&issued(), &body(token, audiences));
            assert_eq!(code, StatusCode::CREATED, "{token}");
            assert_eq!(answer["status"].get("authenticated"), None, "false is left out: {answer}");
            assert!(answer["status"]["error"].as_str().unwrap().starts_with(error), "{answer}");
            assert_eq!(answer["status"]["user"], json!({}));
        }
    }

    #[test]
    fn malformed_reviews_are_bad_requests() {
        for bad in [
            b"not json".to_vec(),
            b"[]".to_vec(),
            body("", &["bakery"]),
            br#"{"kind": "Pod", "spec": {"token": "x"}}"#.to_vec(),
        ] {
            let (code, answer) = review(&issued(), &bad);
            assert_eq!((code, answer["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{answer}");
        }
        assert!(IssuedToken::parse(&json!({"token": "t", "user": {}})).is_err(), "a user has a name");
        assert!(IssuedToken::parse(&json!({"token": "", "user": {"username": "u"}})).is_err());
    }
}
