//! The conversion to the wire and back: every field lands where the proto documents it.

use std::collections::HashMap;

use prost::Message;

use super::*;

/// A sample with a distinct, non-default value in every field, so that
/// a field dropped or swapped by the conversion shows in the round trip.
/// One piece: a single literal with every field of a [`Sample`].
fn full_sample() -> Sample {
    let times = |base: u64| CpuTimes {
        user: base + 1,
        nice: base + 2,
        system: base + 3,
        idle: base + 4,
        iowait: base + 5,
        irq: base + 6,
        softirq: base + 7,
        steal: base + 8,
    };
    let counters = |base: u64| NetCounters {
        rx_bytes: base + 1,
        rx_packets: base + 2,
        rx_errors: base + 3,
        rx_dropped: base + 4,
        tx_bytes: base + 5,
        tx_packets: base + 6,
        tx_errors: base + 7,
        tx_dropped: base + 8,
    };
    Sample {
        node_name: "master-02".to_string(),
        timestamp_ms: 1_767_225_600_123,
        cpu: Some(CpuStat {
            total: times(1000),
            cores: vec![CoreTimes { cpu: 0, times: times(100) }, CoreTimes { cpu: 3, times: times(300) }],
        }),
        memory: Some(Memory {
            total_bytes: 8_000_000_000,
            available_bytes: 5_000_000_000,
            free_bytes: 1_000_000_000,
            buffers_bytes: 100_000_000,
            cached_bytes: 2_000_000_000,
            swap_total_bytes: 512_000_000,
            swap_free_bytes: 256_000_000,
        }),
        // Not on the wire: see sample_to_wire.
        node_cgroup: None,
        pressure: vec![
            Pressure {
                resource: Resource::Cpu,
                stall: Stall::Some,
                avg10: 1.5,
                avg60: 2.25,
                avg300: 3.0,
                total_us: 123_456,
            },
            Pressure {
                resource: Resource::Memory,
                stall: Stall::Full,
                avg10: 0.5,
                avg60: 0.25,
                avg300: 0.125,
                total_us: 789,
            },
            Pressure { resource: Resource::Io, stall: Stall::Some, avg10: 9.0, avg60: 8.0, avg300: 7.0, total_us: 42 },
        ],
        thermals: Thermals {
            temperatures: vec![
                Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 81_250 },
                Temperature { sensor: "hwmon0/cold/temp1".into(), millidegrees_celsius: -5_000 },
            ],
            fans: vec![Fan { sensor: "hwmon2/pwmfan/fan1".into(), rpm: 3_100 }],
            voltage_alarms: vec![VoltageAlarm { sensor: "hwmon1/rpi_volt/in0_lcrit_alarm".into(), active: true }],
        },
        cpu_frequencies: vec![CpuFrequency { cpu: 2, current_khz: 1_500_000, max_khz: 2_400_000 }],
        throttle: Some(Throttle {
            raw: 0x5_0005,
            now: ThrottleFlags {
                under_voltage: true,
                arm_frequency_capped: false,
                throttled: true,
                soft_temperature_limit: false,
            },
            since_boot: ThrottleFlags {
                under_voltage: false,
                arm_frequency_capped: true,
                throttled: false,
                soft_temperature_limit: true,
            },
        }),
        interfaces: vec![
            Interface {
                name: "eth0".into(),
                kind: InterfaceKind::Physical,
                master: Some("bond0".into()),
                counters: counters(10_000),
            },
            Interface { name: "bond0".into(), kind: InterfaceKind::Bond, master: None, counters: counters(20_000) },
        ],
        conntrack: Some(Conntrack { count: 1_234, max: 65_536 }),
        pods: vec![
            Pod {
                identity: PodIdentity {
                    uid: "8a7c4d5e-0000-4000-8000-000000000001".into(),
                    qos_class: QosClass::Burstable,
                    cgroup_path: "/kubepods/burstable/pod8a7c4d5e-0000-4000-8000-000000000001".into(),
                    host_network: false,
                },
                network: Some(counters(500)),
                tcp: Some(TcpConnections {
                    established_inbound: 11,
                    established_outbound: 12,
                    listen: 13,
                    time_wait: 14,
                    close_wait: 15,
                    syn_recv: 16,
                    other: 17,
                    inbound_peers: 29,
                    detail_age_ms: Some(18),
                    established: 19,
                    in_use: 20,
                    time_wait_now: 21,
                    active_opens_total: 22,
                    passive_opens_total: 23,
                    attempt_fails_total: 24,
                    estab_resets_total: 25,
                    in_segments_total: 26,
                    out_segments_total: 27,
                    retransmitted_segments_total: 28,
                }),
                cpu_usage_us: Some(9_876_543),
                memory_working_set_bytes: Some(123_000_000),
                process_count: 4,
            },
            Pod {
                identity: PodIdentity {
                    uid: "8a7c4d5e-0000-4000-8000-000000000002".into(),
                    qos_class: QosClass::Guaranteed,
                    cgroup_path: "/kubepods/pod8a7c4d5e-0000-4000-8000-000000000002".into(),
                    host_network: true,
                },
                network: None,
                tcp: None,
                cpu_usage_us: Some(5),
                memory_working_set_bytes: Some(6),
                process_count: 1,
            },
        ],
        unavailable: vec![Unavailable { signal: "conntrack".into(), reason: "module not loaded".into() }],
        parse_errors_total: 3,
    }
}

fn resource_from_name(name: &str) -> Resource {
    match name {
        "cpu" => Resource::Cpu,
        "memory" => Resource::Memory,
        "io" => Resource::Io,
        other => panic!("unknown resource {other}"),
    }
}

fn qos_from_name(name: &str) -> QosClass {
    match name {
        "guaranteed" => QosClass::Guaranteed,
        "burstable" => QosClass::Burstable,
        "besteffort" => QosClass::BestEffort,
        other => panic!("unknown qos {other}"),
    }
}

fn times_back(t: &pb::CpuTimes) -> CpuTimes {
    CpuTimes {
        user: t.user,
        nice: t.nice,
        system: t.system,
        idle: t.idle,
        iowait: t.iowait,
        irq: t.irq,
        softirq: t.softirq,
        steal: t.steal,
    }
}

fn counters_back(c: &pb::NetCounters) -> NetCounters {
    NetCounters {
        rx_bytes: c.rx_bytes,
        rx_packets: c.rx_packets,
        rx_errors: c.rx_errors,
        rx_dropped: c.rx_dropped,
        tx_bytes: c.tx_bytes,
        tx_packets: c.tx_packets,
        tx_errors: c.tx_errors,
        tx_dropped: c.tx_dropped,
    }
}

/// Written out, not derived from [`interface_kind`], so that a kind
/// mapped to the wrong variant fails the round trip.
fn kind_back(kind: pb::InterfaceKind) -> InterfaceKind {
    match kind {
        pb::InterfaceKind::Unspecified => InterfaceKind::Unspecified,
        pb::InterfaceKind::Physical => InterfaceKind::Physical,
        pb::InterfaceKind::Bond => InterfaceKind::Bond,
        pb::InterfaceKind::Bridge => InterfaceKind::Bridge,
        pb::InterfaceKind::Stacked => InterfaceKind::Stacked,
        pb::InterfaceKind::Loopback => InterfaceKind::Loopback,
        pb::InterfaceKind::PodVeth => InterfaceKind::PodVeth,
        pb::InterfaceKind::Veth => InterfaceKind::Veth,
        pb::InterfaceKind::Tunnel => InterfaceKind::Tunnel,
        pb::InterfaceKind::Virtual => InterfaceKind::Virtual,
    }
}

fn flags_back(f: &pb::ThrottleFlags) -> ThrottleFlags {
    ThrottleFlags {
        under_voltage: f.under_voltage,
        arm_frequency_capped: f.arm_frequency_capped,
        throttled: f.throttled,
        soft_temperature_limit: f.soft_temperature_limit,
    }
}

/// The inverse of [`sample_to_wire`], as a receiver would decode it: the
/// round trip through it proves every field reaches the wire intact.
/// One piece: one field-by-field mirror of the conversion, read against it.
fn sample_back(node_name: &str, s: &pb::Sample, identities: &HashMap<u32, pb::PodIdentity>) -> Sample {
    Sample {
        node_name: node_name.to_string(),
        timestamp_ms: s.timestamp_ms,
        cpu: s.cpu_total.as_ref().map(|total| {
            assert_eq!(total.cpu, CPU_TOTAL);
            CpuStat {
                total: times_back(total),
                cores: s
                    .cpu_cores
                    .iter()
                    .map(|c| CoreTimes { cpu: u32::try_from(c.cpu).unwrap(), times: times_back(c) })
                    .collect(),
            }
        }),
        memory: s.memory.as_ref().map(|m| Memory {
            total_bytes: m.total_bytes,
            available_bytes: m.available_bytes,
            free_bytes: m.free_bytes,
            buffers_bytes: m.buffers_bytes,
            cached_bytes: m.cached_bytes,
            swap_total_bytes: m.swap_total_bytes,
            swap_free_bytes: m.swap_free_bytes,
        }),
        node_cgroup: None,
        pressure: s
            .pressure
            .iter()
            .map(|p| Pressure {
                resource: resource_from_name(&p.resource),
                stall: if p.kind == "full" { Stall::Full } else { Stall::Some },
                avg10: p.avg10,
                avg60: p.avg60,
                avg300: p.avg300,
                total_us: p.total_us,
            })
            .collect(),
        thermals: Thermals {
            temperatures: s
                .temperatures
                .iter()
                .map(|t| Temperature { sensor: t.sensor.clone(), millidegrees_celsius: t.millidegrees_celsius })
                .collect(),
            fans: s.fans.iter().map(|f| Fan { sensor: f.sensor.clone(), rpm: f.rpm }).collect(),
            voltage_alarms: s
                .voltage_alarms
                .iter()
                .map(|v| VoltageAlarm { sensor: v.sensor.clone(), active: v.active })
                .collect(),
        },
        cpu_frequencies: s
            .cpu_frequencies
            .iter()
            .map(|f| CpuFrequency { cpu: f.cpu, current_khz: f.current_khz, max_khz: f.max_khz })
            .collect(),
        throttle: s.throttle.as_ref().map(|t| Throttle {
            raw: t.raw,
            now: flags_back(t.now.as_ref().unwrap()),
            since_boot: flags_back(t.since_boot.as_ref().unwrap()),
        }),
        interfaces: s
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                kind: kind_back(i.kind()),
                master: Some(i.master.as_str()).filter(|master| !master.is_empty()).map(Into::into),
                counters: counters_back(i.counters.as_ref().unwrap()),
            })
            .collect(),
        conntrack: s.conntrack.as_ref().map(|c| Conntrack { count: c.count, max: c.max }),
        pods: s
            .pods
            .iter()
            .map(|p| {
                let id = &identities[&p.pod_ref];
                Pod {
                    identity: PodIdentity {
                        uid: id.uid.clone(),
                        qos_class: qos_from_name(&id.qos_class),
                        cgroup_path: id.cgroup_path.clone(),
                        host_network: id.host_network,
                    },
                    network: p.network.as_ref().map(counters_back),
                    tcp: p.tcp.as_ref().map(|t| TcpConnections {
                        established_inbound: t.established_inbound,
                        established_outbound: t.established_outbound,
                        listen: t.listen,
                        time_wait: t.time_wait,
                        close_wait: t.close_wait,
                        syn_recv: t.syn_recv,
                        other: t.other,
                        inbound_peers: t.inbound_peers,
                        detail_age_ms: t.detail_age_ms,
                        established: t.established,
                        in_use: t.in_use,
                        time_wait_now: t.time_wait_now,
                        active_opens_total: t.active_opens_total,
                        passive_opens_total: t.passive_opens_total,
                        attempt_fails_total: t.attempt_fails_total,
                        estab_resets_total: t.estab_resets_total,
                        in_segments_total: t.in_segments_total,
                        out_segments_total: t.out_segments_total,
                        retransmitted_segments_total: t.retransmitted_segments_total,
                    }),
                    cpu_usage_us: Some(p.cpu_usage_us),
                    memory_working_set_bytes: Some(p.memory_working_set_bytes),
                    process_count: p.process_count,
                }
            })
            .collect(),
        unavailable: s
            .unavailable
            .iter()
            .map(|u| Unavailable { signal: u.signal.clone(), reason: u.reason.clone() })
            .collect(),
        parse_errors_total: s.parse_errors_total,
    }
}

#[test]
fn a_full_sample_survives_the_round_trip_through_the_encoded_wire_form() {
    let sample = full_sample();
    let mut refs = PodRefs::new();
    let wire = batch(std::slice::from_ref(&sample), &mut refs);
    let decoded = pb::Batch::decode(wire.encode_to_vec().as_slice()).unwrap();
    let identities: HashMap<u32, pb::PodIdentity> =
        decoded.new_pods.iter().map(|id| (id.pod_ref, id.clone())).collect();
    assert_eq!(decoded.samples.len(), 1);
    assert_eq!(sample_back("master-02", &decoded.samples[0], &identities), sample);
}

#[test]
fn fields_land_where_the_proto_documents_them() {
    let mut refs = PodRefs::new();
    let wire = sample_to_wire(&full_sample(), &mut refs);
    let total = wire.cpu_total.as_ref().unwrap();
    assert_eq!((total.cpu, total.user, total.steal), (-1, 1001, 1008));
    assert_eq!(wire.cpu_cores.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(wire.cpu_cores[1].idle, 304);
    let kinds: Vec<(&str, &str)> = wire.pressure.iter().map(|p| (p.resource.as_str(), p.kind.as_str())).collect();
    assert_eq!(kinds, [("cpu", "some"), ("memory", "full"), ("io", "some")]);
    assert_eq!(wire.temperatures[1].millidegrees_celsius, -5_000);
    assert_eq!(wire.fans[0].rpm, 3_100);
    assert!(wire.voltage_alarms[0].active);
    let throttle = wire.throttle.as_ref().unwrap();
    assert_eq!(throttle.raw, 0x5_0005);
    assert!(throttle.now.as_ref().unwrap().under_voltage);
    assert!(throttle.since_boot.as_ref().unwrap().soft_temperature_limit);
    assert_eq!(wire.interfaces[0].counters.as_ref().unwrap().tx_dropped, 10_008);
    let kinds: Vec<(i32, &str)> = wire.interfaces.iter().map(|i| (i.kind, i.master.as_str())).collect();
    // INTERFACE_KIND_PHYSICAL = 1, INTERFACE_KIND_BOND = 2; no master is "".
    assert_eq!(kinds, [(1, "bond0"), (2, "")]);
    assert_eq!(wire.conntrack, Some(pb::Conntrack { count: 1_234, max: 65_536 }));
    assert_eq!(wire.pods[0].tcp.as_ref().unwrap().syn_recv, 16);
    assert_eq!(wire.pods[0].tcp.as_ref().unwrap().inbound_peers, 29);
    assert_eq!(wire.pods[0].cpu_usage_us, 9_876_543);
    assert_eq!(wire.pods[1].network, None, "a hostNetwork pod has no network of its own");
    assert_eq!(wire.unavailable[0].signal, "conntrack");
    assert_eq!(wire.parse_errors_total, 3);
}

#[test]
fn each_interface_kind_has_the_number_the_proto_gives_it() {
    let numbers = [
        (InterfaceKind::Unspecified, 0),
        (InterfaceKind::Physical, 1),
        (InterfaceKind::Bond, 2),
        (InterfaceKind::Bridge, 3),
        (InterfaceKind::Stacked, 4),
        (InterfaceKind::Loopback, 5),
        (InterfaceKind::PodVeth, 6),
        (InterfaceKind::Veth, 7),
        (InterfaceKind::Tunnel, 8),
        (InterfaceKind::Virtual, 9),
    ];
    for (kind, number) in numbers {
        assert_eq!(interface_kind(kind) as i32, number, "{kind:?}");
    }
}

#[test]
fn an_unknown_pod_cgroup_figure_is_sent_as_zero() {
    let mut sample = full_sample();
    sample.pods[0].cpu_usage_us = None;
    sample.pods[0].memory_working_set_bytes = None;
    let wire = sample_to_wire(&sample, &mut PodRefs::new());
    assert_eq!((wire.pods[0].cpu_usage_us, wire.pods[0].memory_working_set_bytes), (0, 0));
}

#[test]
fn a_sample_without_signals_has_no_empty_messages() {
    let wire = sample_to_wire(&Sample { timestamp_ms: 7, ..Sample::default() }, &mut PodRefs::new());
    assert_eq!(wire, pb::Sample { timestamp_ms: 7, ..pb::Sample::default() });
}

#[test]
fn every_batch_lists_the_identities_it_references_once_with_stable_numbers() {
    let mut refs = PodRefs::new();
    let sample = full_sample();
    let first = batch(&[sample.clone(), sample.clone()], &mut refs);
    let second = batch(std::slice::from_ref(&sample), &mut refs);
    assert_eq!(first.new_pods.len(), 2, "each pod once, although two samples reference it");
    assert_eq!(first.new_pods, second.new_pods, "the same pods keep the same numbers in later batches");
    let first_refs: Vec<u32> = first.samples[0].pods.iter().map(|p| p.pod_ref).collect();
    assert_eq!(first_refs, [first.new_pods[0].pod_ref, first.new_pods[1].pod_ref]);
    assert_ne!(first.new_pods[0].pod_ref, first.new_pods[1].pod_ref);
    assert_eq!(first.new_pods[0].qos_class, "burstable");
    assert!(first.new_pods[1].host_network);
}

#[test]
fn the_stream_strips_identities_it_already_declared_and_a_new_stream_declares_again() {
    let mut refs = PodRefs::new();
    let sample = full_sample();
    let mut declared = DeclaredPods::new();
    let mut first = batch(std::slice::from_ref(&sample), &mut refs);
    declared.strip_declared(&mut first);
    assert_eq!(first.new_pods.len(), 2);
    let mut second = batch(std::slice::from_ref(&sample), &mut refs);
    declared.strip_declared(&mut second);
    assert!(second.new_pods.is_empty(), "already declared on this stream");

    let mut on_new_stream = batch(std::slice::from_ref(&sample), &mut refs);
    DeclaredPods::new().strip_declared(&mut on_new_stream);
    assert_eq!(on_new_stream.new_pods.len(), 2, "a resumed stream is told again");
}

#[test]
fn a_batch_written_over_the_last_one_is_the_batch_made_afresh_whatever_changed() {
    let full = full_sample();
    let mut fewer = full.clone();
    fewer.pods.truncate(1);
    fewer.interfaces.reverse();
    fewer.thermals.temperatures.clear();
    fewer.unavailable.push(Unavailable { signal: "cpufreq".into(), reason: "absent".into() });
    let mut renamed = full.clone();
    renamed.pods[0].identity.uid = "a-longer-uid-than-before-0000-0000-0000".into();
    renamed.interfaces[0].name = "a-longer-name".into();
    renamed.interfaces[0].master = None;
    let empty = Sample { timestamp_ms: 7, ..Sample::default() };
    let (mut refs, mut fresh_refs, mut buffer) = (PodRefs::new(), PodRefs::new(), BatchBuffer::new());
    for sample in [&full, &fewer, &renamed, &empty, &full, &full] {
        let fresh = batch(std::slice::from_ref(sample), &mut fresh_refs);
        assert_eq!(*buffer.fill(sample, &mut refs), fresh);
        assert_eq!(buffer.encode(), fresh.encode_to_vec().as_slice());
    }
}
