//! What a scenario expects: the exact set of (node, cause) verdicts, as `expect` is written.

use bakery_diagnosis::Cause;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The verdicts a scenario expects: exactly this set of (node, cause) pairs, active for a meaningful
/// part of the load-test window; empty for "no node is a hog". Written `expect = "none"`,
/// `expect = { node = "master-02", cause = "ingress-concentration" }`, or a list of such tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub verdicts: Vec<ExpectedVerdict>,
}

/// One expected verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVerdict {
    pub node: ExpectedNode,
    pub cause: Cause,
}

impl Expectation {
    /// No hog.
    pub fn none() -> Self {
        Self { verdicts: Vec::new() }
    }
}

impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.verdicts.as_slice() {
            [] => serializer.serialize_str("none"),
            [one] => one.serialize(serializer),
            several => several.serialize(serializer),
        }
    }
}

/// Read through a JSON value so that each way of writing it gets its own error message (serde's
/// untagged enums only say that nothing matched).
impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        const FORMS: &str =
            "write expect = \"none\", expect = { node = \"NODE\", cause = \"CAUSE\" }, or a list of such tables";
        let one = |value: serde_json::Value| serde_json::from_value::<ExpectedVerdict>(value).map_err(D::Error::custom);
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(word) if word == "none" => Ok(Self::none()),
            serde_json::Value::Array(items) if items.is_empty() => {
                Err(D::Error::custom("expect = [] names no verdict: write expect = \"none\" for no hog"))
            }
            serde_json::Value::Array(items) => {
                Ok(Self { verdicts: items.into_iter().map(one).collect::<Result<_, _>>()? })
            }
            value @ serde_json::Value::Object(_) => Ok(Self { verdicts: vec![one(value)?] }),
            other => Err(D::Error::custom(format!("expect = {other}: {FORMS}"))),
        }
    }
}

/// Which node a verdict should name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpectedNode {
    /// Whichever node this run's connections pinned to (kube-proxy picks an endpoint per connection
    /// at random, so with few connections the hog re-rolls every run; with ClientIP affinity the
    /// first connection's pick holds for every later one). Resolved after the run from the web
    /// pods' own accepted-connection counts: the node holding at least twice its expected share of
    /// them, or no hog when none does.
    Pinned(PinnedMarker),
    Named(String),
}

/// The word `pinned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinnedMarker {
    Pinned,
}
