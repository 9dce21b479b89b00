//! Reads a chart this module wrote back into numbers through its own axis labels, as a person reads it.

use roxmltree::{Document, Node};

/// A chart read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Top to bottom.
    pub panels: Vec<Panel>,
    /// The active spans the evidence panels show, once per verdict.
    pub verdicts: Vec<VerdictSpan>,
}

/// One panel read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Its `data-panel`: `share`, or the reading it plots (`nic-share`, `unattributed-cpu`, ...).
    pub name: String,
    /// The causes whose evidence it shows.
    pub causes: Vec<String>,
    /// Its title as shown, with the unit.
    pub title: String,
    pub lines: Vec<Line>,
}

/// One node's line in a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub node: String,
    pub signal: String,
    /// `observed` or `expected`.
    pub class: String,
    /// (seconds from the window's start, value) in drawing order; a gap in the data starts a new segment.
    pub segments: Vec<Vec<(f64, f64)>>,
}

/// Where a verdict was active, in seconds from the window's start.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictSpan {
    pub node: String,
    pub cause: String,
    pub from_s: f64,
    pub to_s: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the chart is not well-formed XML: {0}")]
    Xml(String),
    #[error("the chart does not read: {0}")]
    Shape(String),
}

impl Chart {
    pub fn panel(&self, name: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.name == name)
    }

    pub fn verdict(&self, node: &str, cause: &str) -> Option<&VerdictSpan> {
        self.verdicts.iter().find(|v| v.node == node && v.cause == cause)
    }
}

impl Panel {
    /// `node`'s line of `class` (`observed` or `expected`).
    pub fn line(&self, node: &str, class: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.node == node && l.class == class)
    }

    /// How `node`'s observed line lies against its expected line from `from_s` to `to_s`; `None`
    /// without both lines or without an observed point in the span.
    pub fn gap(&self, node: &str, from_s: f64, to_s: f64) -> Option<Gap> {
        let expected = self.line(node, "expected")?;
        let gaps: Vec<f64> = self
            .line(node, "observed")?
            .points()
            .filter(|(t, _)| (from_s..=to_s).contains(t))
            .filter_map(|(t, v)| Some(v - expected.at(t)?))
            .collect();
        (!gaps.is_empty()).then(|| Gap {
            points: gaps.len(),
            above: gaps.iter().filter(|&&g| g > 0.0).count(),
            min: gaps.iter().copied().fold(f64::INFINITY, f64::min),
            mean: gaps.iter().sum::<f64>() / gaps.len() as f64,
            max: gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// How one node's observed line lies against its expected line over a span: observed minus expected
/// at each observed point, in the panel's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Observed points in the span.
    pub points: usize,
    /// Of those, the ones above the expected line.
    pub above: usize,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Line {
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.segments.iter().flatten().copied()
    }

    /// Its value at `t_s`, between the points around it; `None` where it has no segment.
    pub fn at(&self, t_s: f64) -> Option<f64> {
        self.segments.iter().find_map(|segment| {
            let after = segment.iter().position(|&(t, _)| t >= t_s)?;
            let (t1, v1) = segment[after];
            if t1 == t_s {
                return Some(v1);
            }
            let (t0, v0) = segment[after.checked_sub(1)?];
            Some(v0 + (v1 - v0) * (t_s - t0) / (t1 - t0))
        })
    }
}

/// Reads every panel of `svg` and the verdict spans it shows, for tests (this crate's, and the demo's
/// on the chart its collector served) that check what the picture shows rather than the report it was
/// drawn from. Times come back in seconds from the window's start and values in their panel's unit,
/// both mapped from the pixel coordinates through the tick labels.
pub fn read(svg: &str) -> Result<Chart, ReadError> {
    let document = Document::parse(svg).map_err(|e| ReadError::Xml(e.to_string()))?;
    let root = document.root_element();
    let time = Axis::read(root, "x")?;
    let mut chart = Chart { panels: Vec::new(), verdicts: Vec::new() };
    for group in root.descendants().filter(|n| has_class(n, "panel")) {
        let name = attribute(group, "data-panel")?.to_string();
        let values = Axis::read(group, "y")?;
        let title = group.descendants().find(|n| has_class(n, "panel-title")).and_then(|n| n.text()).unwrap_or("");
        let mut panel = Panel {
            causes: group.attribute("data-cause").unwrap_or("").split_whitespace().map(String::from).collect(),
            title: title.to_string(),
            lines: Vec::new(),
            name,
        };
        for polyline in group.descendants().filter(|n| n.has_tag_name("polyline")) {
            read_polyline(&mut panel, polyline, &time, &values)?;
        }
        for span in group.descendants().filter(|n| has_class(n, "verdict-span")) {
            let (node, cause) = (attribute(span, "data-node")?, attribute(span, "data-cause")?);
            if chart.verdict(node, cause).is_none() {
                let x = number(span, "x")?;
                let from_s = time.value(x);
                let to_s = time.value(x + number(span, "width")?);
                chart.verdicts.push(VerdictSpan { node: node.to_string(), cause: cause.to_string(), from_s, to_s });
            }
        }
        chart.panels.push(panel);
    }
    Ok(chart)
}

/// Adds a polyline's points as a segment of its node's line.
fn read_polyline(panel: &mut Panel, polyline: Node<'_, '_>, time: &Axis, values: &Axis) -> Result<(), ReadError> {
    let class = attribute(polyline, "class")?;
    let (node, signal) = (attribute(polyline, "data-node")?, attribute(polyline, "data-signal")?);
    let mut segment = Vec::new();
    for pair in attribute(polyline, "points")?.split_whitespace() {
        let (x, y) = pair.split_once(',').ok_or_else(|| shape(format!("point {pair:?}")))?;
        let parse = |s: &str| s.parse::<f64>().map_err(|_| shape(format!("point {pair:?}")));
        segment.push((time.value(parse(x)?), values.value(parse(y)?)));
    }
    match panel.lines.iter_mut().find(|l| l.node == node && l.signal == signal && l.class == class) {
        Some(line) => line.segments.push(segment),
        None => panel.lines.push(Line {
            node: node.to_string(),
            signal: signal.to_string(),
            class: class.to_string(),
            segments: vec![segment],
        }),
    }
    Ok(())
}

/// Maps a coordinate to a value, through an axis's outermost ticks.
struct Axis {
    at: f64,
    value: f64,
    per_coordinate: f64,
}

impl Axis {
    /// The axis `which` (`x` or `y`) of the ticks inside `scope`.
    fn read(scope: Node<'_, '_>, which: &str) -> Result<Self, ReadError> {
        let coordinate = if which == "x" { "x1" } else { "y1" };
        let mut ticks = Vec::new();
        for tick in scope.descendants().filter(|n| has_class(n, "tick") && n.attribute("data-axis") == Some(which)) {
            let child = |class: &str| tick.children().find(|n| has_class(n, class));
            let mark = child("tick-mark").ok_or_else(|| shape(format!("a {which} tick without its mark")))?;
            let label = child("tick-label").and_then(|n| n.text()).unwrap_or("");
            ticks.push((number(mark, coordinate)?, label_value(label)?));
        }
        ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
        match (ticks.first(), ticks.last()) {
            (Some(&(c0, v0)), Some(&(c1, v1))) if c1 > c0 => {
                Ok(Self { at: c0, value: v0, per_coordinate: (v1 - v0) / (c1 - c0) })
            }
            _ => Err(shape(format!("fewer than two {which} ticks"))),
        }
    }

    fn value(&self, coordinate: f64) -> f64 {
        self.value + (coordinate - self.at) * self.per_coordinate
    }
}

/// A tick label's value: `+5 s`, `0.25`, `3M`, `250k`.
fn label_value(label: &str) -> Result<f64, ReadError> {
    let text = label.trim();
    let text = text.strip_suffix(" s").unwrap_or(text);
    let (digits, factor) = match text.char_indices().last() {
        Some((i, 'k')) => (&text[..i], 1e3),
        Some((i, 'M')) => (&text[..i], 1e6),
        Some((i, 'G')) => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    digits.parse::<f64>().map(|v| v * factor).map_err(|_| shape(format!("tick label {label:?}")))
}

fn has_class(node: &Node<'_, '_>, class: &str) -> bool {
    node.attribute("class") == Some(class)
}

fn attribute<'a>(node: Node<'a, '_>, name: &str) -> Result<&'a str, ReadError> {
    node.attribute(name).ok_or_else(|| shape(format!("a <{}> without {name}", node.tag_name().name())))
}

fn number(node: Node<'_, '_>, name: &str) -> Result<f64, ReadError> {
    let text = attribute(node, name)?;
    text.parse().map_err(|_| shape(format!("{name}={text:?} is not a number")))
}

fn shape(what: String) -> ReadError {
    ReadError::Shape(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_numbers() {
        assert_eq!(label_value("+5 s"), Ok(5.0));
        assert_eq!(label_value("-4 s"), Ok(-4.0));
        assert_eq!(label_value("0.25"), Ok(0.25));
        assert_eq!(label_value("3M"), Ok(3e6));
        assert_eq!(label_value("2.5k"), Ok(2500.0));
        assert!(label_value("five").is_err());
    }

    #[test]
    fn a_line_is_read_between_its_points() {
        let line = Line {
            node: "a".into(),
            signal: "s".into(),
            class: "observed".into(),
            segments: vec![vec![(0.0, 0.0), (2.0, 1.0)], vec![(5.0, 3.0), (6.0, 3.0)]],
        };
        assert_eq!(line.at(1.0), Some(0.5));
        assert_eq!(line.at(5.0), Some(3.0));
        assert_eq!(line.at(3.0), None);
        assert_eq!(line.at(-1.0), None);
    }
}
