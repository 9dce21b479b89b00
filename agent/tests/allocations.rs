//! Heap allocations per steady-state sample on a node with 30 pods, counted by a global allocator.
//!
//! The measured path is the one a streaming agent takes for each sample:
//! [`Sampler::sample_at`] into the `Sample` it keeps, [`BatchBuffer::fill`]
//! (the self-contained batch of that sample) and [`BatchBuffer::encode`],
//! [`Spool::push_encoded`] (the copy the spool holds until the collector
//! acknowledges it), then what the stream does to send it:
//! [`Spool::pending_after`] and [`wire::write_batch_message`] (the
//! `AgentMessage`'s bytes, identities the stream knows left out), and the
//! ack that releases it. Only tonic's and HTTP/2's own work is outside. The clock is simulated at the streaming
//! agent's pace (a sample every 250 ms, its slowest, so the work done every
//! 2 s weighs the most), so that the measured samples include their share
//! of `/proc` walks, directory listings, sysfs and `memory.stat` refreshes
//! and quiet-namespace TCP refreshes, as the running agent's do.
//!
//! Allocations and reallocations are both counted (a `Vec` that grows is
//! a heap allocation too), by every thread: this file holds one test, so
//! the measured section is the only code running.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bakery_agent::pods::ScanPolicy;
use bakery_agent::roots::HostRoots;
use bakery_agent::sampler::{Sample, Sampler};
use bakery_agent::spool::{Pending, Spool};
use bakery_agent::wire::{self, BatchBuffer, DeclaredPods, PodRefs};
use bakery_proto::v1 as pb;
use prost::Message;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "allocations/node30.rs"]
mod node30;

use node30::Sensors;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The goal: at most this many heap allocations per steady-state sample.
const MOST_PER_SAMPLE: f64 = 50.0;

/// The streaming agent's slowest pace.
const INTERVAL: Duration = Duration::from_millis(250);

/// Samples before the measured ones: every pod found, every namespace's
/// socket tables read once (two per sample), every buffer grown.
const WARM_UP: u32 = 20;

/// 12 s at 250 ms: six of each 2 s refresh, and no 30 s veth remapping
/// (which dumps the links of the machine running the test).
const MEASURED: u32 = 48;

/// The counts of one run.
struct Counted {
    per_sample: Vec<u64>,
    /// The same samples through the path that allocates afresh every time.
    owned_path_per_sample: f64,
}

impl Counted {
    fn mean(&self) -> f64 {
        self.per_sample.iter().sum::<u64>() as f64 / self.per_sample.len() as f64
    }
}

fn allocations(region: &Region<'_, std::alloc::System>) -> u64 {
    let change = region.change();
    (change.allocations + change.reallocations) as u64
}

/// Samples the 30-pod node at the streaming agent's pace and counts what
/// each measured sample allocates; checks on the way that the batch
/// written in place is the one made afresh.
fn count(sensors: Sensors) -> Counted {
    let dir = node30::build(sensors);
    let roots = HostRoots::new(dir.path().join("proc"), dir.path().join("sys"));
    let mut sampler = Sampler::new(roots, "pi5").with_scan_policy(ScanPolicy::STREAMING);
    let (mut refs, mut buffer, mut sample) = (PodRefs::new(), BatchBuffer::new(), Sample::default());
    let mut spool = Spool::in_memory(64 << 20);
    let (mut declared, mut declared_any) = (DeclaredPods::new(), DeclaredPods::new());
    let start = Instant::now();
    let mut per_sample = Vec::with_capacity(MEASURED as usize);
    for index in 0..WARM_UP + MEASURED {
        let (now, timestamp_ms) = (start + INTERVAL * index, 1_764_000_000_000 + i64::from(index) * 250);
        let region = Region::new(GLOBAL);
        sampler.sample_at(&mut sample, timestamp_ms, now);
        buffer.fill(&sample, &mut refs);
        let seq = spool.push_encoded(buffer.encode());
        let Some(Pending::Batch { payload, .. }) = spool.pending_after(seq - 1) else { panic!("batch {seq} is held") };
        let mut message = Vec::new();
        wire::write_batch_message(seq, &payload, &mut declared, Some(&mut declared_any), &mut message).unwrap();
        let payload = payload.into_owned();
        spool.ack(seq);
        let counted = allocations(&region);
        if index >= WARM_UP {
            per_sample.push(counted);
        }
        assert_eq!(sample.pods.len(), node30::PODS, "{:?}", sample.unavailable);
        let mut fresh_refs = PodRefs::new();
        let fresh = wire::batch(std::slice::from_ref(&sample), &mut fresh_refs);
        assert_eq!(*buffer.batch(), fresh, "the batch written in place is the one made afresh");
        assert_eq!(payload, fresh.encode_to_vec());
        let pb::AgentMessage { kind: Some(pb::agent_message::Kind::Batch(sent)) } =
            pb::AgentMessage::decode(message.as_slice()).unwrap()
        else {
            panic!("a batch message")
        };
        assert_eq!((sent.seq, &sent.samples), (seq, &fresh.samples), "the stream sends the sample as numbered");
        let declared_now = if index == 0 { fresh.new_pods.len() } else { 0 };
        assert_eq!(sent.new_pods.len(), declared_now, "each pod is declared once on the stream");
    }
    let owned_path_per_sample = count_owned_path(&mut sampler, start + INTERVAL * (WARM_UP + MEASURED));
    Counted { per_sample, owned_path_per_sample }
}

/// What the same sampler allocates per sample through [`Sampler::sample`]
/// and [`wire::batch`], which build everything afresh (for comparison).
fn count_owned_path(sampler: &mut Sampler, from: Instant) -> f64 {
    let mut refs = PodRefs::new();
    let region = Region::new(GLOBAL);
    for index in 0..MEASURED {
        let mut sample = Sample::default();
        sampler.sample_at(&mut sample, 1_764_000_100_000 + i64::from(index) * 250, from + INTERVAL * index);
        let batch = wire::batch(std::slice::from_ref(&sample), &mut refs);
        let _payload = batch.encode_to_vec();
    }
    allocations(&region) as f64 / f64::from(MEASURED)
}

#[test]
fn a_steady_state_sample_of_30_pods_makes_at_most_50_heap_allocations() {
    for (sensors, node) in [(Sensors::Pi5, "a Pi 5 with every sensor"), (Sensors::None, "a VM without sensors")] {
        let counted = count(sensors);
        let (mean, most) = (counted.mean(), counted.per_sample.iter().max().copied().unwrap_or_default());
        println!(
            "{node}, 30 pods: {mean:.1} heap allocations per sample (most in one sample: {most}; \
             built afresh: {:.1})",
            counted.owned_path_per_sample
        );
        assert!(
            mean <= MOST_PER_SAMPLE,
            "{node}: {mean:.1} heap allocations per sample, more than {MOST_PER_SAMPLE}; per sample: {:?}",
            counted.per_sample
        );
    }
}
