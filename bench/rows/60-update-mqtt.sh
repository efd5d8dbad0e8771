#!/usr/bin/env bash
# Row 6: an update over MQTT. The same ~100 MB docker-save tarball goes through mosquitto on
# loopback: `berth fleet push` to a berth agent (chunked, signed, written to disk, made durable and
# verified by the agent; timed from the agent's first progress message, once it has subscribed to
# the chunk topic, to the one saying it applies: every chunk held, on disk and the whole sha256
# checked, before load and apply), against the fair peer: `mosquitto_pub --repeat` ->
# `mosquitto_sub -N` of the same number of messages of the same chunk size at QoS 1 into a file,
# then `sync FILE` (fsync) and `sha256sum FILE`. The loopback ceiling (the same messages
# discarded by mosquitto_sub) is measured in the same rounds and reported beside it.
# Also the agent's peak RSS (VmHWM) while it received. 3 interleaved rounds (--quick 1).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
rounds=$([ -n "$BENCH_QUICK" ] && echo 1 || echo 3)
chunk=98304
MOSQ='' AGENT=''
cleanup() {
    [ -z "$AGENT" ] || { kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null || true; }
    [ -z "$MOSQ" ] || { kill "$MOSQ" 2>/dev/null; wait "$MOSQ" 2>/dev/null || true; }
    "$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" rm -f app >/dev/null 2>&1 || true
    unmount_under "$BENCH_TMP"
}
trap cleanup EXIT

log "generating the ~100 MB image (busybox + 100 MB of random bytes)"
tarball=$BENCH_TMP/app100.tar
"$PY" - "$BENCH_WORK/rootfs" "$tarball" <<'PY'
import hashlib, io, json, os, sys, tarfile
root, out = sys.argv[1], sys.argv[2]
def layer(add):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        add(t)
    return b.getvalue()
base = layer(lambda t: t.add(root, arcname=".", recursive=True))
def big(t):
    ti = tarfile.TarInfo("data/blob")
    ti.size = 100 * 1000 * 1000
    t.addfile(ti, io.BytesIO(os.urandom(ti.size)))
top = layer(big)
layers = [base, top]
diffs = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sleep", "100000"]},
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
with tarfile.open(out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    names = []
    for d, l in zip(diffs, layers):
        names.append(d[7:] + "/layer.tar")
        add(names[-1], l)
    add(ch + ".json", cfg)
    add("manifest.json", json.dumps([{"Config": ch + ".json", "RepoTags": ["app:big"], "Layers": names}]).encode())
PY
size=$(stat -c %s "$tarball")
nchunks=$(( (size + chunk - 1) / chunk ))
mb=$(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1e6 }')

mosquitto_start "max_queued_messages 4000" "max_inflight_messages 64" "max_packet_size 2000000"

"$BERTH_FULL" fleet --mqtt "$url" keygen --out "$BENCH_TMP/key" >/dev/null
start_agent() {
    "$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" agent --mqtt "$url" --device-id bench-1 \
        --default-network host --trust "$BENCH_TMP/key.pub" 2>>"$BENCH_TMP/agent.log" &
    AGENT=$!
    for _ in $(seq 100); do
        [ "$(mosquitto_sub -p "$port" -t berth/v1/bench-1/status -C 1 -W 1 2>/dev/null)" = online ] && return 0
    done
    die "the agent did not come online ($(tail -n 2 "$BENCH_TMP/agent.log" | tr '\n' ' '))"
}

berth_ms=() raw_ms=() fair_ms=() hwm=() subrss=()
for r in $(seq "$rounds"); do
    # berth: a fresh agent and store each round (its peak RSS is this round's).
    [ -z "$AGENT" ] || { kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=''; }
    "$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" rm -f app >/dev/null 2>&1 || true
    rm -rf "$BENCH_TMP/dev"
    start_agent
    mosquitto_sub -p "$port" -t berth/v1/bench-1/progress -F '%U %p' >"$BENCH_TMP/progress.$r" 2>/dev/null &
    sub=$!
    sleep 0.3
    s=$EPOCHREALTIME
    "$BERTH_FULL" fleet --mqtt "$url" push --key "$BENCH_TMP/key" --to bench-1 --health-window 1 "$tarball" \
        --run "--name app app:big" >"$BENCH_TMP/push.$r" 2>&1 || die "push failed: $(tail -n 3 "$BENCH_TMP/push.$r" | tr '\n' ' ')"
    kill "$sub" 2>/dev/null; wait "$sub" 2>/dev/null || true
    # From the device's first progress (it has subscribed; the sender streams from then on) to
    # the one saying it holds every chunk: the transfer alone, not the push's own set-up (its
    # sha256 of the file, waiting for the device's state).
    first=$(awk '/"phase":"receiving"/ { print $1; exit }' "$BENCH_TMP/progress.$r")
    got=$(awk '/"phase":"applying"/ { print $1; exit }' "$BENCH_TMP/progress.$r")
    [ -n "$first" ] && [ -n "$got" ] || die "no 'receiving' and 'applying' progress seen"
    berth_ms+=("$(awk -v s="$first" -v e="$got" 'BEGIN { printf "%.1f", (e - s) * 1000 }')")
    hwm+=("$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGENT/status")")
    # raw: the same message count and size, QoS 1, through the same broker.
    head -c "$chunk" /dev/urandom >"$BENCH_TMP/chunk"
    /usr/bin/time -f %M -o "$BENCH_TMP/sub.rss" mosquitto_sub -p "$port" -q 1 -t bench/raw -C "$nchunks" >/dev/null &
    sub=$!
    sleep 0.3
    s=$EPOCHREALTIME
    mosquitto_pub -p "$port" -q 1 -t bench/raw -f "$BENCH_TMP/chunk" --repeat "$nchunks"
    wait "$sub"
    e=$EPOCHREALTIME
    raw_ms+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.1f", (e - s) * 1000 }')")
    subrss+=("$(tail -n 1 "$BENCH_TMP/sub.rss")")
    # fair: the same messages kept in a file on the same disk as berth's root, fsynced and hashed.
    out=$BENCH_TMP/fair.out
    rm -f "$out"
    mosquitto_sub -p "$port" -q 1 -t bench/fair -C "$nchunks" -N >"$out" &
    sub=$!
    sleep 0.3
    s=$EPOCHREALTIME
    mosquitto_pub -p "$port" -q 1 -t bench/fair -f "$BENCH_TMP/chunk" --repeat "$nchunks"
    wait "$sub"
    sync "$out"
    sha256sum "$out" >/dev/null
    e=$EPOCHREALTIME
    [ "$(stat -c %s "$out")" = $((nchunks * chunk)) ] || die "mosquitto_sub wrote $(stat -c %s "$out") bytes, not $((nchunks * chunk))"
    fair_ms+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.1f", (e - s) * 1000 }')")
    rm -f "$out"
    log "round $r: berth ${berth_ms[-1]} ms, mosquitto_sub to a file + fsync + sha256sum ${fair_ms[-1]} ms, mosquitto_pub/sub ${raw_ms[-1]} ms, agent peak RSS ${hwm[-1]} kB"
done
b=$(median "${berth_ms[@]}")
p=$(median "${fair_ms[@]}")
raw=$(median "${raw_ms[@]}")
emit what="update transfer of a $mb MB tarball over MQTT (loopback mosquitto, 96 KiB chunks, QoS 1)" unit=ms \
    berth="$b" peer_name="mosquitto_pub -> mosquitto_sub -N > file, sync file, sha256sum file" peer="$p" \
    how="$rounds interleaved rounds; berth: the device's first progress (subscribed) -> it has every chunk durable and the whole sha256 checked (phase applying); $(spread "${berth_ms[@]}") vs $(spread "${fair_ms[@]}"); loopback MQTT ceiling (mosquitto_sub discarding): $(spread "${raw_ms[@]}")"
rate=$(awk -v s="$size" -v ms="$b" 'BEGIN { printf "%.1f", s / 1e6 / (ms / 1000) }')
prate=$(awk -v s="$size" -v ms="$p" 'BEGIN { printf "%.1f", s / 1e6 / (ms / 1000) }')
crate=$(awk -v s="$size" -v ms="$raw" 'BEGIN { printf "%.1f", s / 1e6 / (ms / 1000) }')
log "throughput: berth $rate MB/s, mosquitto_sub to a file + fsync + sha256sum $prate MB/s, loopback ceiling $crate MB/s"
k=$(median "${hwm[@]}")
emit what="peak RSS receiving the $mb MB update" unit=MB berth="$(kb_to_mb "$k")" peer_name="mosquitto_sub (same bytes, discarded)" \
    peer="$(kb_to_mb "$(median "${subrss[@]}")")" \
    how="berth: VmHWM of the agent over the whole update (receive to disk, verify, load in a child process, apply); peer: GNU time %M; medians of $rounds"
