//! The built `bakery-agent --once --json` on this very machine agrees with
//! `/proc` read independently by the test: memory, the core count, and CPU
//! jiffies bracketed by readings taken just before and just after the run.

use std::process::Command;

use serde_json::Value;

/// The eight modes the agent reports, in /proc/stat's column order.
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// Jiffies per mode, in [`MODES`] order.
type Modes = [u64; 8];

/// The test's own reading of `/proc/stat`: the `cpu` line and each `cpuN` line.
struct Jiffies {
    total: Modes,
    cores: Vec<(u32, Modes)>,
}

fn read_jiffies() -> Jiffies {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let mut total = None;
    let mut cores = Vec::new();
    for line in stat.lines().filter(|line| line.starts_with("cpu")) {
        let mut fields = line.split_whitespace();
        let label = fields.next().expect("a label");
        let mut modes = [0; 8];
        for (slot, field) in modes.iter_mut().zip(fields) {
            *slot = field.parse().expect("a jiffies count");
        }
        match label.strip_prefix("cpu").expect("a cpu label") {
            "" => total = Some(modes),
            number => cores.push((number.parse().expect("a core number"), modes)),
        }
    }
    Jiffies { total: total.expect("a cpu line"), cores }
}

/// A `/proc/meminfo` field in bytes.
fn read_meminfo_bytes(field: &str) -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let line = meminfo.lines().find(|line| line.split(':').next() == Some(field)).expect("the field");
    let kib: u64 = line.split_whitespace().nth(1).expect("a value").parse().expect("a number");
    kib * 1024
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("{pointer} in the agent's JSON"))
}

/// A `CpuTimes` object of the agent's JSON, in [`MODES`] order.
fn agent_modes(times: &Value) -> Modes {
    MODES.map(|mode| times[mode].as_u64().unwrap_or_else(|| panic!("{mode} in {times}")))
}

/// Checks that `agent` lies between `before` and `after`, mode by mode.
///
/// Jiffies only grow, with one exception: an idle CPU's idle and iowait
/// time are computed at read time, and iowait turns into idle when the I/O
/// completes (proc(5): iowait "may decrease"); as /proc/stat rounds each
/// field to ticks on its own (fs/proc/stat.c, `nsec_to_clock_t` per field),
/// their sum can then drop by a tick. So idle and iowait are checked as one
/// sum, and every bound has `slack` ticks. A wrong column or core lands
/// outside: neighbouring modes differ by far more than a few ticks.
fn assert_between(what: &str, before: &Modes, agent: &Modes, after: &Modes, slack: u64) {
    let idle_and_iowait = |m: &Modes| m[3] + m[4];
    let mut checks: Vec<(String, u64, u64, u64)> =
        [0, 1, 2, 5, 6, 7].into_iter().map(|i| (MODES[i].to_string(), before[i], agent[i], after[i])).collect();
    checks.push(("idle+iowait".to_string(), idle_and_iowait(before), idle_and_iowait(agent), idle_and_iowait(after)));
    for (mode, before, agent, after) in checks {
        assert!(
            before.saturating_sub(slack) <= agent && agent <= after + slack,
            "{what} {mode}: the agent read {agent} jiffies, /proc/stat had {before} before and {after} after"
        );
    }
}

#[test]
fn agent_reads_this_machines_memory_and_cpu_like_proc_does() {
    // Built (or found fresh) by cargo first, so a stale binary is never tested.
    let binary = bakery_lab::binaries::built_binary("bakery-agent", "bakery-agent").expect("the agent binary");

    let jiffies_before = read_jiffies();
    let total_before = read_meminfo_bytes("MemTotal");
    let available_before = read_meminfo_bytes("MemAvailable");
    let output = Command::new(&binary)
        .args(["--once", "--json", "--rate-window", "10ms", "--proc-root", "/proc", "--sys-root", "/sys"])
        .env("BAKERY_LOG", "warn")
        .output()
        .expect("running bakery-agent");
    let available_after = read_meminfo_bytes("MemAvailable");
    let total_after = read_meminfo_bytes("MemTotal");
    let jiffies_after = read_jiffies();

    assert!(output.status.success(), "bakery-agent failed: {}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("--once --json prints JSON");
    let sample = &json["sample"];

    // Memory. MemTotal only changes on memory hotplug or a balloon driver,
    // so it must equal one of the two independent readings exactly.
    let total = u64_at(sample, "/memory/total_bytes");
    assert!(
        total == total_before || total == total_after,
        "agent MemTotal {total} B, /proc/meminfo {total_before} B before and {total_after} B after"
    );
    // MemAvailable moves with every allocation on the machine. Builds next
    // to this test can allocate and free hundreds of MiB within the run, so
    // allow 1/32 of RAM around the before/after range. A unit mix-up (kB
    // for bytes is off by 1024x) is far outside it; MemFree read for
    // MemAvailable is caught once the page cache exceeds the tolerance.
    let available = u64_at(sample, "/memory/available_bytes");
    let tolerance = total / 32;
    let low = available_before.min(available_after).saturating_sub(tolerance);
    let high = available_before.max(available_after) + tolerance;
    assert!(
        (low..=high).contains(&available) && available <= total,
        "agent MemAvailable {available} B outside {low}..={high} B (before {available_before}, after {available_after})"
    );

    // Cores: the agent lists exactly the cpuN lines of /proc/stat.
    let agent_cores = sample["cpu"]["cores"].as_array().expect("cpu.cores in the agent's JSON");
    let agent_numbers: Vec<u64> = agent_cores.iter().map(|core| core["cpu"].as_u64().expect("a cpu number")).collect();
    let proc_numbers: Vec<u64> = jiffies_before.cores.iter().map(|(cpu, _)| u64::from(*cpu)).collect();
    assert_eq!(agent_numbers, proc_numbers, "the agent's cores against /proc/stat's cpuN lines");

    // Every mode lies between our two readings (see assert_between for the slack).
    let slack_per_cpu = 2;
    let cpus = jiffies_before.cores.len() as u64;
    let agent_total = agent_modes(&sample["cpu"]["total"]);
    assert_between("cpu", &jiffies_before.total, &agent_total, &jiffies_after.total, slack_per_cpu * cpus);
    for ((core, (cpu, before)), (_, after)) in agent_cores.iter().zip(&jiffies_before.cores).zip(&jiffies_after.cores) {
        assert_between(&format!("cpu{cpu}"), before, &agent_modes(&core["times"]), after, slack_per_cpu);
    }
}
