//! The live detector: feeds each tick into the history, analyses the detection and live spans, and
//! runs one hysteresis state per node and family, so verdicts neither flap nor linger.
//!
//! The evaluation is a pure function of the ticks seen so far (and the configuration): the same ticks
//! give the same verdicts, bit for bit. Nothing here reads a clock; time is the ticks' timestamps.
//!
//! Hysteresis per (node, family): a condition above its enter threshold for `enter_after` consecutive
//! evaluations raises the verdict; an active verdict clears after `exit_after` consecutive evaluations
//! below the (lower) exit threshold. Between the two thresholds an active verdict stays and the exit
//! count restarts. A node that leaves the cluster clears at once. Within the traffic family, the cause
//! of an active verdict changes only when the new cause has held for `enter_after` evaluations.
//!
//! Each node also keeps its own baseline of unattributed CPU: the lowest detection-span figure seen
//! at ticks outside load-test windows, rising only slowly and not while the node has such a verdict
//! pending or active, so that neither the load under test nor the hog becomes its own reference.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::analysis::Signal;
use crate::analysis::{Analysis, analyse};
use crate::classify::{Context, Family, assess};
use crate::config::Config;
use crate::explain::explain;
use crate::history::History;
use crate::input::Tick;
use crate::verdict::{Cause, ChangeKind, Verdict, VerdictChange};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Above the enter threshold for this many consecutive evaluations, not raised yet.
    Pending(u32),
    /// Raised; below the exit threshold for this many consecutive evaluations.
    Active { below: u32 },
}

#[derive(Debug, Clone, PartialEq)]
struct FamilyState {
    phase: Phase,
    cause: Cause,
    first_seen_ms: i64,
    since_ms: i64,
    /// A different cause seen while active, and for how many consecutive evaluations.
    challenger: Option<(Cause, u32)>,
}

/// The result of one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub timestamp_ms: i64,
    /// Shares over the live span (10 s): what bakery-top shows.
    pub live: Analysis,
    /// Shares over the detection span (2 s): what the flags were evaluated on.
    pub detection: Analysis,
    /// Every raised verdict, sorted by node then cause.
    pub verdicts: Vec<Verdict>,
    /// Verdicts raised or cleared at this tick.
    pub changes: Vec<VerdictChange>,
}

/// A node's own baseline of unattributed CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Baseline {
    cores: f64,
    /// How long it has learnt, ms.
    learnt_ms: i64,
    /// The tick it last learnt at.
    at_ms: i64,
}

/// Keeps the history and the hysteresis states between ticks.
#[derive(Debug, Clone)]
pub struct Detector {
    config: Config,
    history: History,
    states: BTreeMap<(String, Family), FamilyState>,
    baselines: BTreeMap<String, Baseline>,
    last_tick_ms: Option<i64>,
}

impl Detector {
    pub fn new(config: Config) -> Result<Self, Error> {
        if config.detect_span_ms <= 0 || config.live_span_ms <= 0 {
            return Err(Error::Config("spans must be positive".into()));
        }
        if config.enter_after == 0 || config.exit_after == 0 {
            return Err(Error::Config("enter_after and exit_after must be at least 1".into()));
        }
        Ok(Self {
            config,
            history: History::default(),
            states: BTreeMap::new(),
            baselines: BTreeMap::new(),
            last_tick_ms: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Evaluates one tick.
    pub fn observe(&mut self, tick: &Tick) -> Result<Evaluation, Error> {
        // One piece: one tick in order: history, analysis, each node's assessments, the state machine, then the
        // evaluation; each step needs what the one before produced.
        if let Some(last) = self.last_tick_ms
            && tick.timestamp_ms < last
        {
            return Err(Error::TimeWentBackwards { previous_ms: last, now_ms: tick.timestamp_ms });
        }
        let retain_ms = self.config.live_span_ms.max(self.config.detect_span_ms);
        self.history.ingest(&tick.nodes, retain_ms)?;
        self.last_tick_ms = Some(tick.timestamp_ms);
        let names: BTreeSet<&str> = tick.nodes.iter().map(|n| n.name.as_str()).collect();

        let workload = tick.workload.as_ref();
        let mut detection = analyse(&self.history, workload, i64::MAX, self.config.detect_span_ms, &self.config);
        let mut live = analyse(&self.history, workload, i64::MAX, self.config.live_span_ms, &self.config);
        for (analysis, span) in [(&mut detection, self.config.detect_span_ms), (&mut live, self.config.live_span_ms)] {
            analysis.to_ms = tick.timestamp_ms;
            analysis.from_ms = tick.timestamp_ms - span;
        }

        let now = tick.timestamp_ms;
        let mut changes = Vec::new();
        // Nodes that left the cluster clear at once.
        let gone: Vec<(String, Family)> =
            self.states.keys().filter(|(n, _)| !names.contains(n.as_str())).cloned().collect();
        for key in gone {
            if let Some(state) = self.states.remove(&key)
                && matches!(state.phase, Phase::Active { .. })
            {
                changes.push(VerdictChange {
                    node: key.0,
                    cause: state.cause,
                    change: ChangeKind::Cleared,
                    at_ms: now,
                });
            }
        }

        self.baselines.retain(|name, _| names.contains(name.as_str()));
        let baselines: BTreeMap<String, f64> = self
            .baselines
            .iter()
            .filter(|(_, b)| b.learnt_ms >= self.config.unattributed.baseline_min_ms)
            .map(|(name, b)| (name.clone(), b.cores))
            .collect();
        let config = self.config.clone();
        let ctx = Context::new(&detection, &config, &baselines);
        let sole_entry = detection.entry.as_ref().and_then(|m| m.sole_entry()).map(str::to_string);
        for name in &names {
            let index = detection.index_of(name);
            // Unattributed CPU goes first: when it holds, it explains the node's NIC excess too, unless
            // the cluster declares the node the sole entry (then both are reported).
            let mut unattributed_holds = false;
            for family in [
                Family::Unattributed,
                Family::Traffic,
                Family::Ingress,
                Family::HotPod,
                Family::Thermal,
                Family::Memory,
            ] {
                let mut assessment = index.and_then(|i| assess(&ctx, i, family));
                if family == Family::Unattributed {
                    unattributed_holds = assessment.is_some_and(|a| a.enter)
                        || self.states.contains_key(&(name.to_string(), Family::Unattributed));
                }
                if family == Family::Ingress
                    && unattributed_holds
                    && sole_entry.as_deref() != Some(*name)
                    && let Some(a) = assessment.as_mut()
                {
                    a.enter = false;
                    a.exit = true;
                }
                self.step(name, family, assessment, now, &mut changes);
            }
        }

        let mut verdicts = Vec::new();
        for ((name, _family), state) in &self.states {
            if !matches!(state.phase, Phase::Active { .. }) {
                continue;
            }
            let Some(index) = detection.index_of(name) else { continue };
            let explanation = explain(&ctx, index, state.cause);
            verdicts.push(Verdict {
                node: name.clone(),
                cause: state.cause,
                confidence: explanation.confidence.clamp(0.0, 1.0),
                since_ms: state.since_ms,
                first_seen_ms: state.first_seen_ms,
                subject: explanation.subject,
                summary: explanation.summary,
                evidence: explanation.evidence,
                next_step: explanation.next_step,
                remedy: explanation.remedy,
                read: explanation.read,
            });
        }
        drop(ctx);
        self.learn_baselines(&detection, tick);
        verdicts.sort_by(|a, b| a.node.cmp(&b.node).then(a.cause.cmp(&b.cause)));
        changes.sort_by(|a, b| {
            a.node.cmp(&b.node).then(a.cause.cmp(&b.cause)).then((a.change as u8).cmp(&(b.change as u8)))
        });
        Ok(Evaluation { timestamp_ms: now, live, detection, verdicts, changes })
    }

    /// Moves each node's baseline with its unattributed CPU over the detection span, outside windows:
    /// down at once, up slowly and only while the node has no such verdict pending or active.
    fn learn_baselines(&mut self, detection: &Analysis, tick: &Tick) {
        if tick.window_open {
            return;
        }
        let tau = self.config.unattributed.baseline_rise_time_constant_ms.max(1) as f64;
        let full = self.config.detect_span_ms as f64 / 1000.0 * 0.9;
        for node in &detection.nodes {
            let Some(cores) = node.value(Signal::UnattributedCpu).filter(|_| node.span_seconds >= full) else {
                continue;
            };
            let now = tick.timestamp_ms;
            let flagged = self.states.contains_key(&(node.node.clone(), Family::Unattributed));
            let baseline =
                self.baselines.entry(node.node.clone()).or_insert(Baseline { cores, learnt_ms: 0, at_ms: now });
            let dt = (now - baseline.at_ms).max(0);
            if cores < baseline.cores {
                baseline.cores = cores;
            } else if !flagged {
                baseline.cores += (1.0 - (-(dt as f64) / tau).exp()) * (cores - baseline.cores);
            }
            baseline.learnt_ms += dt;
            baseline.at_ms = now;
        }
    }

    /// Advances one (node, family) state; `None` assessment counts as below the exit threshold.
    fn step(
        &mut self,
        node: &str,
        family: Family,
        assessment: Option<crate::classify::Assessment>,
        now: i64,
        changes: &mut Vec<VerdictChange>,
    ) {
        // One piece: the hysteresis state machine of one (node, family), every transition in one match so that each
        // is seen next to the others.
        let key = (node.to_string(), family);
        let enter = assessment.is_some_and(|a| a.enter);
        let exit = assessment.is_none_or(|a| a.exit);
        let (enter_after, exit_after) = (self.config.enter_after, self.config.exit_after);
        let change = |cause, change| VerdictChange { node: node.to_string(), cause, change, at_ms: now };
        match self.states.get_mut(&key) {
            None => {
                if let (true, Some(a)) = (enter, assessment) {
                    let mut state = FamilyState {
                        phase: Phase::Pending(1),
                        cause: a.cause,
                        first_seen_ms: now,
                        since_ms: now,
                        challenger: None,
                    };
                    if enter_after <= 1 {
                        state.phase = Phase::Active { below: 0 };
                        changes.push(change(a.cause, ChangeKind::Entered));
                    }
                    self.states.insert(key, state);
                }
            }
            Some(state) => match state.phase {
                Phase::Pending(count) => match assessment.filter(|_| enter) {
                    Some(a) => {
                        state.cause = a.cause;
                        if count + 1 >= enter_after {
                            state.phase = Phase::Active { below: 0 };
                            state.since_ms = now;
                            changes.push(change(a.cause, ChangeKind::Entered));
                        } else {
                            state.phase = Phase::Pending(count + 1);
                        }
                    }
                    None => {
                        self.states.remove(&key);
                    }
                },
                Phase::Active { below } => {
                    if exit {
                        if below + 1 >= exit_after {
                            let cause = state.cause;
                            self.states.remove(&key);
                            changes.push(change(cause, ChangeKind::Cleared));
                        } else {
                            state.phase = Phase::Active { below: below + 1 };
                            state.challenger = None;
                        }
                        return;
                    }
                    state.phase = Phase::Active { below: 0 };
                    // A different cause takes over only after it has held as long as a new verdict must.
                    match assessment.map(|a| a.cause).filter(|&c| c != state.cause) {
                        Some(other) => {
                            let held = match state.challenger {
                                Some((c, n)) if c == other => n + 1,
                                _ => 1,
                            };
                            if held >= enter_after {
                                changes.push(change(state.cause, ChangeKind::Cleared));
                                changes.push(change(other, ChangeKind::Entered));
                                state.cause = other;
                                state.since_ms = now;
                                state.first_seen_ms = now;
                                state.challenger = None;
                            } else {
                                state.challenger = Some((other, held));
                            }
                        }
                        None => state.challenger = None,
                    }
                }
            },
        }
    }
}
