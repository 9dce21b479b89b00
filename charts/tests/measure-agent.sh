#!/usr/bin/env bash
# Measures bakery-agent's CPU and memory, to size agent.resources in
# charts/bakery/values.yaml. Run as root from the workspace root:
#
#   cargo xtask dist
#   bash charts/tests/measure-agent.sh [PODS] [SECONDS]     # defaults: 30 pods, 120 s
#
# Two runs of the release binaries from target/dist/<host triple>/:
#  1. steady: PODS simulated pods (a network namespace with lo up and a
#     listening process, in a kubepods-style cgroup: cgroup v1 cpuacct+memory
#     when present, else v2), a collector on 127.0.0.1 with a temporary store,
#     the agent streaming every 1 s for SECONDS. Prints the agent's peak RSS
#     (VmHWM), RSS at the end, and CPU per sample from /proc/<pid>/stat.
#  2. outage: the agent streaming to a closed port every 50 ms with a disk
#     spool and --spool-max-bytes 2MiB, until the spool has been full and
#     overflowing for a while: RSS while unacknowledged samples pile up (with
#     --spool-dir the payloads are on disk, memory holds their index).
#
# Nothing leaves the machine: the collector listens on 127.0.0.1 only, the
# namespaces have only lo. Everything made is removed on exit (trap), also on
# failure or Ctrl-C; each run is bounded in time.
set -euo pipefail

PODS=${1:-30}
SECONDS_STEADY=${2:-120}
[ "$(id -u)" = 0 ] || { echo "measure-agent.sh: run as root (network namespaces, cgroups)" >&2; exit 1; }
triple=$(rustc -vV | sed -n 's/^host: //p')
dist=target/dist/$triple
for b in bakery-agent bakery-collector; do
  [ -x "$dist/$b" ] || { echo "measure-agent.sh: $dist/$b missing: run cargo xtask dist" >&2; exit 1; }
done

tag="bkm$$"
work=$(mktemp -d)
pids=()
netns=()
cgroups=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # children first: container cgroups were appended after their pod cgroup
  for ((i=${#cgroups[@]}-1; i>=0; i--)); do rmdir "${cgroups[$i]}" 2>/dev/null || true; done
  for n in "${netns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The layout tests/src/netns.rs uses: v1 cpuacct and memory controllers when
# mounted, else the v2 unified hierarchy.
cpuacct=""
for name in cpuacct cpu,cpuacct cpuacct,cpu; do
  [ -f "/sys/fs/cgroup/$name/cpuacct.usage" ] && { cpuacct=/sys/fs/cgroup/$name; break; }
done
if [ -n "$cpuacct" ] && [ -f /sys/fs/cgroup/memory/memory.usage_in_bytes ]; then
  hierarchies=("$cpuacct" /sys/fs/cgroup/memory)
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  hierarchies=(/sys/fs/cgroup)
else
  echo "measure-agent.sh: no cgroup v1 cpuacct+memory and no cgroup v2 under /sys/fs/cgroup" >&2; exit 1
fi

for i in $(seq 1 "$PODS"); do
  ns="$tag-$i"
  ip netns add "$ns"; netns+=("$ns")
  ip -n "$ns" link set lo up
  uid=$(cat /proc/sys/kernel/random/uuid)
  cid=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  ip netns exec "$ns" python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 80)); s.listen()
deadline = time.monotonic() + 3600
while time.monotonic() < deadline: time.sleep(1)
' &
  pid=$!; pids+=("$pid")
  for h in "${hierarchies[@]}"; do
    mkdir -p "$h/kubepods/besteffort"
    mkdir "$h/kubepods/besteffort/pod$uid"; cgroups+=("$h/kubepods/besteffort/pod$uid")
    mkdir "$h/kubepods/besteffort/pod$uid/$cid"; cgroups+=("$h/kubepods/besteffort/pod$uid/$cid")
    echo "$pid" > "$h/kubepods/besteffort/pod$uid/$cid/cgroup.procs"
  done
done
echo "made $PODS pods ($tag-*), cgroups under ${hierarchies[*]}"
seen=$("$dist/bakery-agent" --once --json 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["sample"]["pods"]))')
echo "bakery-agent --once sees $seen pods"
[ "$seen" -ge "$PODS" ] || { echo "measure-agent.sh: the agent does not see the pods" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime (proc(5))
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# --- 1. steady streaming -------------------------------------------------------
"$dist/bakery-collector" serve --listen 127.0.0.1:0 --data-dir "$work/store" --insecure-no-auth \
  --ready-file "$work/ready" 2>"$work/collector.log" &
collector=$!; pids+=("$collector")
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "the collector did not start:" >&2; cat "$work/collector.log" >&2; exit 1; }
address=$(cat "$work/ready")

BAKERY_LOG=warn "$dist/bakery-agent" --collector "http://$address" --insecure-no-auth --interval 1s \
  --spool-dir "$work/spool" 2>"$work/agent.log" &
agent=$!; pids+=("$agent")
sleep 10   # warm-up: first connect, caches filled
start_ticks=$(cpu_ticks "$agent"); start=$(date +%s.%N)
sleep "$SECONDS_STEADY"
end_ticks=$(cpu_ticks "$agent"); end=$(date +%s.%N)
hwm=$(kib "$agent" VmHWM); rss=$(kib "$agent" VmRSS)
kill "$agent"; wait "$agent" 2>/dev/null || true
awk -v t0="$start_ticks" -v t1="$end_ticks" -v hz="$ticks" -v s0="$start" -v s1="$end" -v hwm="$hwm" -v rss="$rss" -v pods="$PODS" 'BEGIN {
  cpu = (t1 - t0) / hz; wall = s1 - s0
  printf "steady, %d pods, 1 s interval, %.0f s: CPU %.3f s = %.1f ms per sample = %.2f%% of one core; VmHWM %.1f MiB, VmRSS %.1f MiB\n",
    pods, wall, cpu, 1000 * cpu / wall, 100 * cpu / wall, hwm / 1024, rss / 1024 }'
grep -v '^$' "$work/agent.log" | tail -3 || true

# --- 2. collector outage: the spool fills and overflows -----------------------------
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BAKERY_LOG=error "$dist/bakery-agent" --collector "http://127.0.0.1:$closed" --insecure-no-auth --interval 50ms \
  --spool-max-bytes 2MiB --spool-dir "$work/spool2" 2>"$work/agent2.log" &
agent=$!; pids+=("$agent")
for t in 30 60 90 120 150 180 210 240; do
  sleep 30
  echo "outage after ${t}s at 20 samples/s: VmRSS $(( $(kib "$agent" VmRSS) / 1024 )) MiB, VmHWM $(( $(kib "$agent" VmHWM) / 1024 )) MiB, spool on disk $(du -sm "$work/spool2" | cut -f1) MiB"
done
kill "$agent"; wait "$agent" 2>/dev/null || true
