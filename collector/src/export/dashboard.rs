//! Guards the Grafana dashboard (charts/bakery/dashboards/bakery.json) against drifting from what
//! the collector exports: every query must name metrics and labels that `/metrics` really serves
//! (Prometheus-translated, as Prometheus and Mimir store OTLP too).

use std::collections::BTreeSet;

use super::model::tests::example_resources;
use super::prometheus::render;

const DASHBOARD: &str = include_str!("../../../charts/bakery/dashboards/bakery.json");

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] =
    &["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"];
/// Aggregation operators (may be followed by `by (...)` before their parenthesis).
const AGGREGATIONS: &[&str] =
    &["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
/// Clauses whose parenthesised arguments are label names.
const LABEL_CLAUSES: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Every query of the dashboard: panel targets, annotations and template variables.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.extend(target["expr"].as_str().map(String::from));
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        out.extend(annotation["expr"].as_str().map(String::from));
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(<selector>, <label>): the selector is PromQL, the label a label name.
            let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).unwrap_or(query);
            let (selector, label) = inner.rsplit_once(',').unwrap_or((inner, ""));
            out.push(format!("{selector} by ({})", label.trim()));
        }
    }
    out
}

/// The identifiers of a query: (metric names, label names). Strings and ranges are skipped.
fn names(query: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let chars: Vec<char> = query.chars().collect();
    let (mut i, mut brace_depth, mut label_clause_depth, mut paren_depth) = (0, 0, None, 0);
    let mut previous_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            '{' => brace_depth += 1,
            '}' => brace_depth -= 1,
            '(' => {
                paren_depth += 1;
                if LABEL_CLAUSES.contains(&previous_word.as_str()) {
                    label_clause_depth = Some(paren_depth);
                }
            }
            ')' => {
                if label_clause_depth == Some(paren_depth) {
                    label_clause_depth = None;
                }
                paren_depth -= 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i + 1 < chars.len() && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '_') {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if word.starts_with('$') || KEYWORDS.contains(&word.as_str()) || AGGREGATIONS.contains(&word.as_str()) {
                    // a Grafana variable or a PromQL keyword
                } else if brace_depth > 0 || label_clause_depth.is_some() {
                    labels.insert(word.clone());
                } else if next != Some(&'(') {
                    metrics.insert(word.clone());
                }
                previous_word = word;
            }
            _ => {}
        }
        i += 1;
    }
    (metrics, labels)
}

/// Metric names and label names in the collector's `/metrics` output for the example data.
fn exported() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = render(&example_resources());
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        metrics.insert(line[..name_end].to_string());
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            for pair in rest.split("\",") {
                if let Some((label, _)) = pair.split_once("=\"") {
                    labels.insert(label.trim_start_matches(',').to_string());
                }
            }
        }
    }
    (metrics, labels)
}

#[test]
fn every_dashboard_query_names_metrics_and_labels_the_collector_exports() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let (exported_metrics, exported_labels) = exported();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 20, "the dashboard has its queries: {}", queries.len());
    let mut used = BTreeSet::new();
    for query in &queries {
        let (metrics, labels) = names(query);
        assert!(!metrics.is_empty(), "no metric in {query:?}");
        for metric in &metrics {
            assert!(exported_metrics.contains(metric), "{metric} (in {query:?}) is not exported");
        }
        for label in &labels {
            assert!(exported_labels.contains(label), "label {label} (in {query:?}) is not exported");
        }
        used.extend(metrics);
    }
    for needed in ["bakery_window_active", "bakery_hog_active", "bakery_traffic_share_expected_ratio"] {
        assert!(used.contains(needed), "the dashboard shows {needed}");
    }
}

#[test]
fn the_query_parser_tells_metrics_from_labels_and_functions() {
    let (metrics, labels) = names(
        r#"sum by (k8s_node_name) (rate(system_cpu_time_seconds_total{cpu_mode!="idle", k8s_node_name=~"$node"}[$__rate_interval])) / on (k8s_node_name) group_left system_memory_limit_bytes"#,
    );
    assert_eq!(metrics, BTreeSet::from(["system_cpu_time_seconds_total".into(), "system_memory_limit_bytes".into()]));
    assert_eq!(labels, BTreeSet::from(["cpu_mode".into(), "k8s_node_name".into()]));
}

#[test]
fn the_dashboard_has_the_variables_rows_and_annotations_users_need() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    for name in ["datasource", "cluster", "node", "pod"] {
        assert!(variables.contains(&name), "variable {name} in {variables:?}");
    }
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert!(rows.iter().any(|r| r.starts_with("Cluster")) && rows.iter().any(|r| r.starts_with("Traffic")), "{rows:?}");
    assert!(rows.iter().any(|r| r.starts_with("Pods")), "{rows:?}");
    let annotations: Vec<&str> =
        dashboard["annotations"]["list"].as_array().into_iter().flatten().filter_map(|a| a["name"].as_str()).collect();
    assert!(annotations.contains(&"Load-test windows") && annotations.contains(&"Hog verdicts"), "{annotations:?}");
}
