#!/usr/bin/env bash
# Container start-to-exit: `berth run --rm --net none busybox true` against `runc run` and
# `crun run` of the same rootfs (an OCI bundle made from `berth export` of the same image),
# interleaved, median of RUNS (default 30). crun refuses hybrid cgroup hosts, so, as
# ../shared/PEERS.md says, both runc and crun run inside `unshare -m` with the cgroup2 mount
# removed: they pay for the same wrapper. Also prints the agent's idle RSS with 0 and 10
# running containers. Usage: bench/run-start.sh [RUNS]
set -euo pipefail
runs=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
berth=${BERTH_BIN:-$here/target/release/berth}
[ -x "$berth" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for t in runc crun; do command -v $t >/dev/null || { echo "bench: $t missing (apt-get install $t)" >&2; exit 1; }; done
work=$(mktemp -d /var/tmp/berth-bench-run.XXXXXX)
sock=$work/agent.sock
cleanup() { [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The image: busybox-static as a one-layer image, and the same rootfs as an OCI bundle.
mkdir -p "$work/src/bin"
cp /bin/busybox "$work/src/bin/busybox"
for a in sh true sleep; do ln -s busybox "$work/src/bin/$a"; done
b() { "$berth" --root "$work/root" -H "unix://$sock" "$@"; }
b import "$work/src" bench:1 >/dev/null
mkdir -p "$work/bundle/rootfs"
b export bench:1 | tar -x -C "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open('config.json'))
c['process']['terminal'] = False
c['process']['args'] = ['true']
c['root']['readonly'] = False
json.dump(c, open('config.json', 'w'))
PY
)
"$berth" --root "$work/root" -H "unix://$sock" agent 2>"$work/agent.log" & agent=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
peer() { unshare -m sh -c "umount /sys/fs/cgroup/unified 2>/dev/null; $1 run -b '$work/bundle' bench-\$\$"; }
bt=(); rt=(); ct=()
for i in $(seq "$runs"); do
  bt+=("$(ms b run --rm --net none bench:1 true)")
  rt+=("$(ms peer runc)")
  ct+=("$(ms peer crun)")
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f %.1f", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}'; }
read -r bm bmin bmax <<<"$(stats "${bt[@]}")"
read -r rm rmin rmax <<<"$(stats "${rt[@]}")"
read -r cm cmin cmax <<<"$(stats "${ct[@]}")"
echo "start-to-exit of 'true' in busybox, $runs interleaved runs each (ms: median [min..max]):"
echo "  berth run --rm --net none   $bm [$bmin..$bmax]"
echo "  runc run (unshare wrapper)  $rm [$rmin..$rmax]   berth/runc $(awk -v a="$bm" -v b="$rm" 'BEGIN{printf "%.2f", a/b}')"
echo "  crun run (unshare wrapper)  $cm [$cmin..$cmax]   berth/crun $(awk -v a="$bm" -v b="$cm" 'BEGIN{printf "%.2f", a/b}')"

rss() { awk '/VmRSS/ {print $2}' "/proc/$agent/status"; }
echo "berth agent idle RSS: 0 containers $(rss) kB"
for i in $(seq 10); do b run -d --name "idle$i" bench:1 sleep 600 >/dev/null; done
sleep 1
echo "berth agent idle RSS: 10 running containers $(rss) kB"
for i in $(seq 10); do b rm -f "idle$i" >/dev/null; done
