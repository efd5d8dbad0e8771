#!/usr/bin/env bash
# Agent memory with N (default 50) running containers, the per-container monitors' memory
# (PSS: what they really add, their pages being mostly shared with the agent's), and the time
# from an agent restart (after kill -9) to serving with every container re-adopted.
# Usage: bench/supervise.sh [N]
set -euo pipefail
n=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
berth=${BERTH_BIN:-$here/target/release/berth}
[ -x "$berth" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-bench-sup.XXXXXX)
sock=$work/agent.sock
b() { "$berth" --root "$work/root" -H "unix://$sock" "$@"; }
start_agent() { "$berth" --root "$work/root" -H "unix://$sock" agent 2>>"$work/agent.log" & agent=$!; }
cleanup() { b ps -aq 2>/dev/null | xargs -r "$berth" --root "$work/root" -H "unix://$sock" rm -f >/dev/null 2>&1 || true; kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/src/bin"; cp /bin/busybox "$work/src/bin/"; ln -s busybox "$work/src/bin/sleep"
b import "$work/src" bench:1 >/dev/null
start_agent
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "agent RSS, 0 containers: $(rss $agent) kB"
t0=$(date +%s%N)
for i in $(seq "$n"); do b run -d --name "s$i" bench:1 sleep 3600 >/dev/null; done
t1=$(date +%s%N)
sleep 1
echo "started $n containers one after another in $(( (t1 - t0) / 1000000 )) ms"
echo "agent RSS, $n running containers: $(rss $agent) kB"
pss=0; cnt=0
for p in $(pgrep -P "$agent"); do
  v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); pss=$((pss + v)); cnt=$((cnt + 1))
done
echo "monitors: $cnt, total PSS $pss kB ($(( pss / (cnt > 0 ? cnt : 1) )) kB each)"
kill -9 "$agent"; wait "$agent" 2>/dev/null || true
t0=$(date +%s%N)
start_agent
until b events --until 0s >/dev/null 2>&1; do sleep 0.005; done
t1=$(date +%s%N)
running=$(b ps -q | wc -l)
echo "agent restart after kill -9 to serving with $running/$n containers re-adopted: $(( (t1 - t0) / 1000000 )) ms"
echo "agent RSS after re-adopting $n: $(rss $agent) kB"
