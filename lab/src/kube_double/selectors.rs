//! Label and field selectors as the API server parses them (`?labelSelector=`, `?fieldSelector=`),
//! so that `kubectl get -l app=web` and `kubectl get pod NAME --watch` (which watches with
//! `fieldSelector=metadata.name=NAME`) select what a real server selects. Pure.

use serde_json::Value;

use super::routes::ListParams;
use super::{Event, Kind};

/// One requirement of a label selector, with the operators the API server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed `labelSelector`: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, LabelOp)>);

impl LabelSelector {
    /// Parses `app=web,tier!=cache,env in (a,b),!legacy,team`.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_label_requirement(part)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object with these labels (`metadata.labels`, absent = none) is selected.
    /// As in Kubernetes, `!=` and `notin` also select objects without the label.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.0.iter().all(|(key, op)| {
            let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match op {
                LabelOp::Equals(v) => value == Some(v.as_str()),
                LabelOp::NotEquals(v) => value != Some(v.as_str()),
                LabelOp::In(values) => value.is_some_and(|x| values.iter().any(|v| v == x)),
                LabelOp::NotIn(values) => !value.is_some_and(|x| values.iter().any(|v| v == x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// Splits at commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

fn parse_label_requirement(part: &str) -> Result<(String, LabelOp), String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok((valid_key(key.trim())?, LabelOp::DoesNotExist));
    }
    if let Some(open) = part.find('(') {
        let close = part.rfind(')').filter(|&close| close > open).ok_or_else(|| format!("unclosed set in {part:?}"))?;
        let values: Vec<String> = part[open + 1..close].split(',').map(|v| v.trim().to_string()).collect();
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        return match head.as_slice() {
            [key, "in"] => Ok((valid_key(key)?, LabelOp::In(values))),
            [key, "notin"] => Ok((valid_key(key)?, LabelOp::NotIn(values))),
            _ => Err(format!("expected `KEY in (...)` or `KEY notin (...)`, found {part:?}")),
        };
    }
    for (separator, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(separator) {
            let (key, value) = (valid_key(key.trim())?, value.trim().to_string());
            return Ok((key, if negated { LabelOp::NotEquals(value) } else { LabelOp::Equals(value) }));
        }
    }
    Ok((valid_key(part)?, LabelOp::Exists))
}

/// A parsed `fieldSelector`: `field=value`, `field==value` or `field!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the selector, accepting only fields in `supported` (the real server answers
    /// `400 field label not supported` for others).
    pub fn parse(text: &str, supported: &[&str]) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}: expected FIELD=VALUE"));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(requirements))
    }

    /// Whether `object` is selected; an absent field reads as the empty string.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = field.split('.').try_fold(object, |v, part| v.get(part)).and_then(Value::as_str).unwrap_or("");
            (actual == value) == *equal
        })
    }
}

/// Which objects of a collection a list or watch selects.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(super) fn new(kind: Kind, namespace: Option<&str>, params: &ListParams) -> Result<Filter, String> {
        let labels = LabelSelector::parse(params.label_selector.as_deref().unwrap_or_default())
            .map_err(|e| format!("unable to parse requirement: {e}"))?;
        let fields =
            FieldSelector::parse(params.field_selector.as_deref().unwrap_or_default(), kind.selectable_fields())?;
        Ok(Filter { namespace: namespace.map(str::to_string), labels, fields })
    }

    pub(super) fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        self.namespace.as_deref().is_none_or(|ns| metadata["namespace"].as_str() == Some(ns))
            && self.labels.matches(metadata["labels"].as_object())
            && self.fields.matches(object)
    }

    /// How `event` reads through this filter: an object that starts matching is ADDED, one that
    /// stops matching is DELETED (what the real server's filtered watch sends).
    pub(super) fn event<'a>(&self, event: &'a Event) -> Option<(&'static str, &'a Value)> {
        let now = self.matches(&event.object);
        if event.kind_of_change == "MODIFIED" {
            let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
            return match (before, now) {
                (true, true) => Some(("MODIFIED", &event.object)),
                (false, true) => Some(("ADDED", &event.object)),
                (true, false) => Some(("DELETED", &event.object)),
                (false, false) => None,
            };
        }
        now.then_some((event.kind_of_change, &event.object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn label_selectors_follow_the_kubernetes_operators() {
        let web = labels(json!({"app": "web", "tier": "front"}));
        let selected = |selector: &str| LabelSelector::parse(selector).unwrap().matches(Some(&web));
        assert!(selected(""));
        assert!(selected("app=web") && selected("app==web") && selected("app = web"));
        assert!(!selected("app=db"));
        assert!(selected("app!=db") && selected("absent!=x"), "!= selects objects without the label");
        assert!(selected("app in (db, web)") && !selected("app in (db)"));
        assert!(selected("app notin (db)") && !selected("app notin (db,web)") && selected("absent notin (x)"));
        assert!(selected("tier") && !selected("absent") && selected("!absent") && !selected("!tier"));
        assert!(selected("app in (web,db),tier=front") && !selected("app in (web,db),tier=back"));
        assert!(!LabelSelector::parse("app=web").unwrap().matches(None));
        assert!(LabelSelector::parse("app in (web").is_err());
        assert!(LabelSelector::parse("app is (web)").is_err());
        assert!(LabelSelector::parse("=web").is_err());
    }

    #[test]
    fn field_selectors_take_only_supported_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": {"nodeName": "pi-2"}});
        let fields = ["metadata.name", "metadata.namespace", "spec.nodeName"];
        let selected = |selector: &str| FieldSelector::parse(selector, &fields).unwrap().matches(&pod);
        assert!(selected("metadata.name=p") && selected("metadata.name==p") && !selected("metadata.name=q"));
        assert!(selected("metadata.name!=q,spec.nodeName=pi-2") && !selected("spec.nodeName!=pi-2"));
        assert_eq!(
            FieldSelector::parse("spec.restartPolicy=Always", &fields),
            Err("field label not supported: spec.restartPolicy".to_string())
        );
        assert!(FieldSelector::parse("metadata.name", &fields).is_err());
    }
}
