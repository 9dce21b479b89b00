//! The collector's bounds against hostile or broken clients, in process: a sequence number
//! beyond what an agent could have produced is refused and never moves the committed one, new
//! node names stop at `--max-nodes` and idle ones are forgotten (not lost), strings and lists are
//! cut and counted, pods are capped, a batch too large for memory is stored but not kept, the
//! queue budget comes back with the commits, only the most recent nodes are read in full at
//! start, a declared 1 ms interval counts as 50 ms, and a sample dated a day ahead neither
//! freezes the analysis nor holds a window open. Each test says what happens to the bad input
//! and checks that nothing honest is lost.

use std::time::{Duration, Instant};

use bakery_collector::ingest::IngestRefusal;
use bakery_collector::limits::{IngestLimits, MIN_BURST, RATE_MULTIPLIER};
use bakery_collector::store::{LoadLimits, Store};
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    AgentMessage, Batch, LiveRequest, NetInterface, PodSample, SetIntervalRequest, Temperature, Unavailable,
    WindowsRequest,
};
use tonic::Code;

use crate::harness::*;
use crate::windows::{nic_batch, play_traffic};

/// The refusals counted under `cause` so far.
fn refusals(collector: &TestCollector, cause: IngestRefusal) -> u64 {
    collector.collector.as_ref().unwrap().shared().refusals.counts().get(cause)
}

fn start_with_limits(limits: IngestLimits) -> impl FnOnce(&mut bakery_collector::ServeConfig) {
    move |config| {
        config.limits = limits;
        config.diagnosis.automatic_windows = false;
        config.diagnosis.tick = Duration::from_millis(50);
    }
}

#[tokio::test]
async fn a_seq_beyond_what_the_agent_could_have_produced_is_refused_and_the_real_agents_data_is_intact() {
    let collector = TestCollector::start().await;
    let mut real = TestAgent::connect(&collector.url(), hello("victim")).await;
    for seq in 1..=5 {
        real.send(batch(seq)).await;
    }
    real.wait_ack(5).await;

    // Someone holding the shared token says Hello as the victim (taking its stream over, which
    // the shared token allows) and sends one batch numbered 2^64 - 1.
    let mut poisoner = TestAgent::connect(&collector.url(), hello("victim")).await;
    assert_eq!(real.expect_error().await.code(), Code::Aborted, "the real stream was replaced");
    poisoner.send(batch(u64::MAX)).await;
    let refused = poisoner.expect_error().await;
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("beyond what this agent could have produced"), "{refused:?}");
    assert!(refused.message().contains("the limit is"), "the refusal names the limit: {refused:?}");
    assert_eq!(poisoner.acked, 5, "never acknowledged");
    assert_eq!(collector.node("victim").await.committed_seq, 5, "the committed seq did not move");
    // A gap that reaches as far is refused the same way.
    let mut poisoner = TestAgent::connect(&collector.url(), hello("victim")).await;
    poisoner.send(gap(6, u64::MAX - 1, "spool overflow")).await;
    assert_eq!(poisoner.expect_error().await.code(), Code::FailedPrecondition);
    assert_eq!(refusals(&collector, IngestRefusal::SeqBeyondBound), 2);

    // The real agent comes back: every batch it sends is stored, none taken for a duplicate.
    let mut real = TestAgent::connect(&collector.url(), hello("victim")).await;
    assert_eq!(real.welcome.committed_seq, 5);
    for seq in 6..=20 {
        real.send(batch(seq)).await;
    }
    assert_eq!(real.wait_ack(20).await, 20);
    let status = collector.node("victim").await;
    assert_eq!((status.committed_seq, status.duplicates_dropped), (20, 0));
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "victim");
    assert_eq!((node.batches, node.first_seq, node.last_seq, node.committed_seq), (20, Some(1), Some(20), 20));
    assert!(node.gaps.is_empty(), "{:?}", node.gaps);
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test]
async fn a_new_node_may_start_at_any_plausible_seq_and_a_disk_less_restart_resumes_after_the_committed_one() {
    let collector = TestCollector::start().await;
    // A node the collector never saw, whose agent's disk spool numbers from a million: taken,
    // what came before recorded as lost.
    let mut spooled = hello("old-agent");
    spooled.oldest_spooled_seq = 1_000_000;
    let mut agent = TestAgent::connect(&collector.url(), spooled).await;
    agent.send(batch(1_000_000)).await;
    agent.wait_ack(1_000_000).await;
    drop(agent.close());
    // An implausible first number (beyond 2^40) is refused even for a new node.
    let mut wild = TestAgent::connect(&collector.url(), hello("wild")).await;
    wild.send(batch((1 << 40) + 1)).await;
    assert_eq!(wild.expect_error().await.code(), Code::FailedPrecondition);
    // The agent lost its disk: it numbers from 1 again, and (as bakery-agent does after the
    // Welcome) renumbers after the committed seq; regressions on a stream stay refused.
    let mut agent = TestAgent::connect(&collector.url(), hello("old-agent")).await;
    assert_eq!(agent.welcome.committed_seq, 1_000_000);
    agent.send(batch(1_000_001)).await;
    agent.send(batch(1_000_002)).await;
    agent.wait_ack(1_000_002).await;
    agent.send(batch(3)).await;
    assert_eq!(agent.expect_error().await.code(), Code::InvalidArgument);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "old-agent");
    assert_eq!((node.batches, node.committed_seq), (3, 1_000_002));
    assert_eq!(node.gaps[0].reason, bakery_collector::ingest::REASON_LOST_BEFORE_SPOOLING);
    assert_eq!(node.unaccounted, Some(vec![]));
    assert!(report.nodes.iter().all(|n| n.node != "wild" || n.batches == 0), "the wild batch was not stored");
}

#[tokio::test]
async fn beyond_max_nodes_new_names_are_refused_and_idle_ones_are_forgotten_but_kept_in_the_store() {
    let limits =
        IngestLimits { max_nodes: 3, forget_nodes_after: Duration::from_millis(300), ..IngestLimits::default() };
    let collector = TestCollector::start_with(start_with_limits(limits)).await;
    let mut honest = TestAgent::connect(&collector.url(), hello("honest")).await;
    honest.send(batch(1)).await;
    honest.wait_ack(1).await;
    let mut fakes = Vec::new();
    for name in ["fake-1", "fake-2"] {
        let mut fake = TestAgent::connect(&collector.url(), hello(name)).await;
        fake.send(batch(1)).await;
        fake.wait_ack(1).await;
        fakes.push(fake);
    }
    // Three nodes in memory, all connected: a fourth name is refused and leaves no trace.
    let refused = TestAgent::try_connect(&collector.url(), Some(TOKEN), hello("fake-3")).await.err().unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-nodes"), "{refused:?}");
    assert_eq!(refusals(&collector, IngestRefusal::NodeCap), 1);
    assert!(collector.nodes().await.iter().all(|n| n.node_name != "fake-3"));

    // The fakes go away; once idle past --forget-nodes-after they are forgotten from memory.
    drop(fakes);
    eventually("the idle fakes to be forgotten", || async {
        collector.nodes().await.iter().map(|n| n.node_name.clone()).collect::<Vec<_>>() == ["honest"]
    })
    .await;
    let mut next = TestAgent::connect(&collector.url(), hello("fake-3")).await;
    next.send(batch(1)).await;
    next.wait_ack(1).await;
    // A forgotten node comes back as itself, resuming after its committed seq.
    let back = TestAgent::connect(&collector.url(), hello("fake-1")).await;
    assert_eq!(back.welcome.committed_seq, 1);
    drop(back);
    for seq in 2..=5 {
        honest.send(batch(seq)).await;
    }
    honest.wait_ack(5).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    for name in ["fake-1", "fake-2", "fake-3"] {
        assert_eq!(node_report(&report, name).batches, 1, "{name} stays in the store");
    }
    let honest = node_report(&report, "honest");
    assert_eq!((honest.batches, honest.committed_seq, honest.gaps.len()), (5, 5, 0));
}

#[tokio::test]
async fn strings_and_lists_over_their_caps_are_cut_and_counted_and_a_huge_node_name_is_refused() {
    let limits = IngestLimits { max_sample_entries: 16, ..IngestLimits::default() };
    let collector = TestCollector::start_with(start_with_limits(limits)).await;
    let mut agent = TestAgent::connect(&collector.url(), hello("strings")).await;
    let mut sample = sample(bakery_collector::now_ms());
    // About 1.8 MB of strings, within the 4 MiB message limit.
    sample.interfaces = (0..40)
        .map(|i| NetInterface { name: format!("{i}{}", "x".repeat(10_000)), ..NetInterface::default() })
        .collect();
    sample.temperatures = vec![Temperature { sensor: "t".repeat(500_000), millidegrees_celsius: 40_000 }];
    sample.unavailable = vec![Unavailable { signal: "pods".into(), reason: "r".repeat(500_000) }];
    sample.pods = vec![PodSample { pod_ref: 1, ..PodSample::default() }];
    let mut identity = pod(1, &"u".repeat(200_000));
    identity.cgroup_path = "/".repeat(200_000);
    let huge = AgentMessage {
        kind: Some(AgentKind::Batch(Batch { seq: 1, new_pods: vec![identity], samples: vec![sample] })),
    };
    agent.send(huge).await;
    assert_eq!(agent.wait_ack(1).await, 1, "kept, cut");
    let status = collector.node("strings").await;
    let latest = status.latest.unwrap();
    assert_eq!(latest.interfaces.len(), 16, "the first 16 interfaces");
    assert!(latest.interfaces.iter().all(|i| i.name.len() == 256));
    assert_eq!((latest.temperatures[0].sensor.len(), latest.unavailable[0].reason.len()), (256, 256));
    assert_eq!((status.pods[0].uid.len(), status.pods[0].cgroup_path.len()), (64, 256));
    // 16 interface names, the sensor, the reason, the uid and the cgroup path; 24 interfaces
    assert_eq!(refusals(&collector, IngestRefusal::StringTruncated), 20);
    assert_eq!(refusals(&collector, IngestRefusal::EntriesDropped), 24);

    // A message that large is not kept by the stream either: acknowledged, then the stream is
    // closed (its read buffer freed) and the agent reconnects.
    let closed = agent.expect_error().await;
    assert_eq!(closed.code(), Code::ResourceExhausted, "{closed:?}");
    assert!(closed.message().contains("stored and acknowledged"), "{closed:?}");
    assert_eq!(refusals(&collector, IngestRefusal::LargeMessage), 1);

    let mut long_name = hello("n");
    long_name.node_name = "n".repeat(1_000_000);
    let refused = TestAgent::try_connect(&collector.url(), Some(TOKEN), long_name).await.err().unwrap();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().len() < 400, "the name is not echoed back whole");
    let mut bulky = hello("bulky");
    bulky.capabilities = vec!["c".repeat(200); 60];
    bulky.boot_id = "b".repeat(100_000);
    let refused = TestAgent::try_connect(&collector.url(), Some(TOKEN), bulky).await.err().unwrap();
    assert!(refused.message().contains("at most 65536"), "{refused:?}");
    assert_eq!(refusals(&collector, IngestRefusal::InvalidHello), 2);
    let mut agent = TestAgent::connect(&collector.url(), hello("strings")).await;
    agent.send(batch(2)).await;
    agent.wait_ack(2).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    assert_eq!(node_report(&report, "strings").batches, 2);
    assert_eq!(report.nodes.len(), 1, "the refused names left nothing");
}

#[tokio::test]
async fn pods_over_the_cap_are_refused_and_the_identities_of_gone_pods_are_forgotten() {
    let limits = IngestLimits { max_pods_per_node: 4, ..IngestLimits::default() };
    let collector = TestCollector::start_with(start_with_limits(limits)).await;
    let mut agent = TestAgent::connect(&collector.url(), hello("busy")).await;
    let pods = |refs: std::ops::RangeInclusive<u32>| refs.map(|r| pod(r, &format!("uid-{r}"))).collect::<Vec<_>>();
    agent.send(batch_with_pods(1, pods(1..=4), &[1, 2, 3, 4])).await;
    agent.wait_ack(1).await;
    // Pods come and go: 5 and 6 start, 1 and 2 are gone. The node keeps 4 identities.
    agent.send(batch_with_pods(2, pods(5..=6), &[3, 4, 5, 6])).await;
    agent.wait_ack(2).await;
    let status = collector.node("busy").await;
    let uids: Vec<&str> = status.pods.iter().map(|p| p.uid.as_str()).collect();
    assert_eq!(uids, ["uid-3", "uid-4", "uid-5", "uid-6"]);
    // A sample with five pods cannot be kept: refused, not cut.
    agent.send(batch_with_pods(3, pods(7..=7), &[3, 4, 5, 6, 7])).await;
    let refused = agent.expect_error().await;
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-pods-per-node"), "{refused:?}");
    assert_eq!(refusals(&collector, IngestRefusal::PodCap), 1);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "busy");
    assert_eq!((node.batches, node.committed_seq, node.pods), (2, 2, 6), "every identity stays in the store");
}

#[tokio::test]
async fn a_batch_too_large_for_memory_is_stored_acknowledged_not_kept_and_the_queue_budget_comes_back() {
    // 16 nodes sharing 1 MiB of history: 64 KiB each.
    let limits =
        IngestLimits { max_nodes: 16, max_history_bytes: 1 << 20, max_queue_bytes: 1 << 20, ..IngestLimits::default() };
    let collector = TestCollector::start_with(start_with_limits(limits)).await;
    let mut agent = TestAgent::connect(&collector.url(), hello("big")).await;
    agent.send(batch(1)).await;
    let mut large = sample(bakery_collector::now_ms());
    large.temperatures =
        (0..1000).map(|i| Temperature { sensor: format!("{i:0>200}"), millidegrees_celsius: i }).collect();
    let large = AgentMessage { kind: Some(AgentKind::Batch(Batch { seq: 2, new_pods: vec![], samples: vec![large] })) };
    agent.send(large).await;
    agent.wait_ack(2).await;
    assert_eq!(agent.expect_error().await.code(), Code::ResourceExhausted, "the stream is closed after it");
    let status = collector.node("big").await;
    assert_eq!(status.committed_seq, 2);
    assert!(status.latest.is_none(), "the large batch is not in memory, and no older one passes for the latest");
    assert_eq!(refusals(&collector, IngestRefusal::BatchNotKept), 1);
    assert_eq!(refusals(&collector, IngestRefusal::LargeMessage), 1);
    let mut agent = TestAgent::connect(&collector.url(), hello("big")).await;
    assert_eq!(agent.welcome.committed_seq, 2);
    agent.send(batch(3)).await;
    agent.wait_ack(3).await;
    assert!(collector.node("big").await.latest.is_some(), "the next small batch is kept");
    // Many batches through a 1 MiB queue budget: every one committed, and the budget is whole
    // again once they are.
    for seq in 4..=200 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(200).await;
    let shared = collector.collector.as_ref().unwrap().shared().clone();
    eventually("the queue budget to come back whole", || async { shared.queue_bytes_free() == 1 << 20 }).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "big");
    assert_eq!((node.batches, node.committed_seq), (200, 200));
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test]
async fn at_start_only_the_most_recently_seen_nodes_are_read_in_full_and_the_others_come_back_as_themselves() {
    let collector = TestCollector::start().await;
    for (i, name) in ["n-old", "n-mid", "n-new"].iter().enumerate() {
        let mut agent = TestAgent::connect(&collector.url(), hello(name)).await;
        agent.send(batch_with_pods(1, vec![pod(1, &format!("uid-{name}"))], &[1])).await;
        for seq in 2..=(i as u64 + 2) {
            agent.send(batch(seq)).await;
        }
        agent.wait_ack(i as u64 + 2).await;
        drop(agent.close());
        tokio::time::sleep(Duration::from_millis(20)).await; // distinct last-seen times
    }
    let dir = collector.stop().await;
    {
        let mut store = Store::open(&dir.path().join("data")).unwrap();
        let limits = LoadLimits { full_nodes: 2, pods_per_node: 10, latest_batch_bytes: 1 << 20 };
        let loaded = store.load_with(&limits).unwrap();
        let full: Vec<(&str, bool, usize, bool)> =
            loaded.iter().map(|n| (n.name.as_str(), n.full, n.pods.len(), n.latest.is_some())).collect();
        assert_eq!(full, [("n-mid", true, 1, true), ("n-new", true, 1, true), ("n-old", false, 0, false)]);
        assert!(loaded.iter().all(|n| n.next_pod_id == 2), "pod ids continue after the stored ones");
        let tiny = LoadLimits { latest_batch_bytes: 1, ..limits };
        assert!(
            store.load_with(&tiny).unwrap().iter().all(|n| n.latest.is_none()),
            "large newest batches stay on disk"
        );
    }

    let collector = TestCollector::start_in(dir, |config| {
        config.limits.max_nodes = 2;
        // Idle nodes may be forgotten at once, but only when a new one needs the room: no
        // analysis tick (which would forget them too) runs during the test.
        config.limits.forget_nodes_after = Duration::ZERO;
        config.diagnosis.tick = Duration::from_secs(3600);
    })
    .await;
    let names: Vec<String> = collector.nodes().await.into_iter().map(|n| n.node_name).collect();
    assert_eq!(names, ["n-mid", "n-new"], "n-old is known by its record only");
    // n-old's agent comes back (n-mid, silent the longest, makes room): its committed seq, and a
    // new pod numbered after the stored one.
    let mut agent = TestAgent::connect(&collector.url(), hello("n-old")).await;
    assert_eq!(agent.welcome.committed_seq, 2);
    agent.send(batch_with_pods(3, vec![pod(9, "uid-late")], &[9])).await;
    agent.wait_ack(3).await;
    let status = collector.node("n-old").await;
    assert_eq!(status.pods.iter().map(|p| (p.pod_ref, p.uid.as_str())).collect::<Vec<_>>(), [(2, "uid-late")]);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "n-old");
    assert_eq!((node.batches, node.committed_seq, node.pods), (3, 3, 2));
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_interval_of_1_ms_counts_as_50_ms_and_set_interval_stops_at_the_agents_minimum() {
    let collector = TestCollector::start().await;
    let mut flood = hello("flood");
    flood.interval_ms = 1;
    let mut flood = TestAgent::connect(&collector.url(), flood).await;
    // 20x of 1 ms would let 100,000 messages through at once; 20x of 50 ms is 400/s after a
    // burst of 2,000. Offer 800 more than that burst as fast as the stream takes them.
    let (rate, burst) = (RATE_MULTIPLIER * 1000.0 / 50.0, (RATE_MULTIPLIER * 1000.0 / 50.0 * 5.0).max(MIN_BURST));
    let total = burst as u64 + 800;
    let start = Instant::now();
    for seq in 1..=total {
        flood.send(batch(seq)).await;
        if seq % 200 == 0 {
            // Never more than the burst, the rate, and the first message (read before any token
            // is taken); a slow machine only lowers what got through.
            let committed = collector.node("flood").await.committed_seq;
            let elapsed = start.elapsed().as_secs_f64();
            let allowed = burst + rate * elapsed + 1.0;
            assert!(
                (committed as f64) <= allowed,
                "{committed} of {seq} through in {elapsed:.1} s; 50 ms allows {allowed:.0}"
            );
        }
    }
    // Slowed, not refused: every message is committed, and no sooner than the rate allows.
    assert_eq!(flood.wait_ack(total).await, total);
    let elapsed = start.elapsed().as_secs_f64();
    let least = (total as f64 - burst - 1.0) / rate;
    assert!(elapsed >= least, "{total} messages committed in {elapsed:.2} s; 400/s after the burst needs {least:.2} s");

    let mut query = QueryClient::new(channel(&collector.url()).await);
    let ask = |interval_ms| SetIntervalRequest { node_name: "flood".into(), interval_ms, reason: String::new() };
    let refused = query.set_interval(authorized(ask(49), Some(TOKEN))).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("50"), "{refused:?}");
    assert!(query.set_interval(authorized(ask(50), Some(TOKEN))).await.is_ok());
    drop(flood);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_dated_a_day_ahead_neither_freezes_the_analysis_nor_holds_an_automatic_window_open() {
    let collector = TestCollector::start_with(|config| config.diagnosis.tick = Duration::from_millis(20)).await;
    let day = 86_400_000;
    let mut honest = TestAgent::connect(&collector.url(), hello("honest")).await;
    let mut ahead = TestAgent::connect(&collector.url(), hello("ahead")).await;
    let t0 = bakery_collector::now_ms();
    // The honest node's traffic surges (an automatic window opens); meanwhile the other node's
    // clock is a day ahead, from its first sample to its last.
    let surge = |elapsed: Duration| {
        if (Duration::from_secs(2)..Duration::from_secs(6)).contains(&elapsed) { 5_000_000 } else { 200_000 }
    };
    let mut ahead_seq = 0;
    let mut opened: Option<bakery_proto::v1::Window> = None;
    let mut closed = None;
    let mut evaluated = Vec::new();
    let mut live = QueryClient::new(channel(&collector.url()).await);
    let done = |windows: &[bakery_proto::v1::Window]| {
        match (windows.first(), &opened) {
            (Some(w), None) if w.automatic && w.end_ms == 0 => opened = Some(w.clone()),
            (Some(w), Some(open)) if w.id == open.id && w.end_ms > 0 => closed = Some(w.clone()),
            _ => {}
        }
        closed.is_some()
    };
    let honest_task = async {
        play_traffic(&collector, &mut honest, 1, Duration::from_secs(40), surge, done).await;
    };
    let ahead_task = async {
        loop {
            ahead_seq += 1;
            ahead.send(nic_batch(ahead_seq, bakery_collector::now_ms() + day, ahead_seq * 1000)).await;
            ahead.wait_ack(ahead_seq).await;
            let response = live.live(authorized(LiveRequest {}, Some(TOKEN))).await.unwrap().into_inner();
            evaluated.push((bakery_collector::now_ms(), response.evaluated_ms));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        () = honest_task => {}
        () = ahead_task => {}
    }
    let (opened, closed) = (opened.expect("the surge opened a window"), closed.expect("and it closed"));
    assert!((t0 + 2_000..t0 + 8_000).contains(&opened.start_ms), "{opened:?} (t0 {t0})");
    assert!((t0 + 16_000..t0 + 30_000).contains(&closed.end_ms), "closed on the collector's clock: {closed:?}");
    // The live view kept evaluating, on the collector's clock, all along.
    let late = evaluated.iter().filter(|(_, at)| *at > 0).collect::<Vec<_>>();
    assert!(late.len() > 20, "{evaluated:?}");
    for (asked, at) in &late {
        assert!((asked - 5_000..=asked + 1_000).contains(at), "evaluated at {at}, asked at {asked}");
    }
    let status = collector.node("ahead").await;
    assert!((-day - 5_000..=-day + 5_000).contains(&status.clock_skew_ms), "{}", status.clock_skew_ms);
    assert!(refusals(&collector, IngestRefusal::ClockSkew) >= 1, "the re-stamped samples are counted");
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let windows = query.windows(authorized(WindowsRequest {}, Some(TOKEN))).await.unwrap().into_inner().windows;
    assert!(windows.iter().all(|w| w.start_ms < t0 + day / 2 && w.end_ms < t0 + day / 2), "{windows:?}");
    let acked = ahead.acked;
    drop((honest, ahead));
    let (_dir, report) = collector.stop_and_inspect().await;
    let stored = node_report(&report, "ahead");
    assert!((acked..=ahead_seq).contains(&stored.batches), "every sample stored, whatever its clock: {stored:?}");
    assert_eq!(stored.unaccounted, Some(vec![]));
}
