#!/usr/bin/env bash
# Row 9.8: a fleet taking one update (issue 21, item 6). 1,000 simulated devices (--quick: 100),
# `berth-lab fleet-sim` (one process, one MQTT connection per device, berth's update protocol up to
# the apply: signature, chunks, progress and resend requests, the tarball's sha256, a committed
# result and state; no disk, no load), on one private mosquitto on loopback. The update: the
# bench's busybox image (BENCH_WORK/busybox.tar, a `berth save` of bench:1) in 96 KiB chunks.
# berth: the wall time of `berth fleet push --group G` to the whole fleet, from start to exit (every
# device committed; it includes the push's 2 s wait for the group's retained states). Its peer, in
# the same round: the broker's own fan-out of the same bytes, `mosquitto_pub --repeat` of as many
# 96 KiB QoS 1 messages to as many plain subscribers (`fleet-sim --fanout`: the same client and
# process model, each subscriber only counting), from the publish to the last subscriber's last
# message. Traffic: mosquitto's $SYS/broker/bytes/{sent,received} before and after the push against
# tarball x devices (sent: ratio ~1.0 means every chunk went once to each device) and the tarball
# once (received). Memory: the simulator's peak RSS per device against the fan-out's per subscriber.
# Rounds: 1 (--quick) or 2, interleaved; each round a fresh simulator.
# bench-timeout: 600
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
devices=$([ -n "$BENCH_QUICK" ] && echo 100 || echo 1000)
rounds=$([ -n "$BENCH_QUICK" ] && echo 1 || echo 2)
chunk=98304
LAB=${BERTH_LAB:-$BENCH_REPO/target/release/berth-lab}
[ -x "$LAB" ] || die "no berth-lab at $LAB (cargo build --release -p berth-lab, or set BERTH_LAB)"
MOSQ='' SIM='' FAN=''
stop() { [ -z "$1" ] || { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }; }
cleanup() {
    set +e
    stop "$SIM"
    stop "$FAN"
    stop "$MOSQ"
}
trap cleanup EXIT

# Each device and the broker hold a socket per device.
need=$((2 * devices + 256))
[ "$(ulimit -n)" -ge "$need" ] || ulimit -n "$need" 2>/dev/null || die "ulimit -n is $(ulimit -n), $need needed (and the hard limit is lower)"

tarball=$BENCH_WORK/busybox.tar
size=$(stat -c %s "$tarball")
nchunks=$(( (size + chunk - 1) / chunk ))
mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')

# max_inflight_messages bounds the copies mosquitto makes per subscriber (it builds each in-flight
# message's packet for each client); max_queued_messages is for the sender, which every device's
# progress, result and state reach (queued chunks are references, not copies); memory_limit keeps
# a runaway from taking the shared machine.
mosquitto_start "max_connections -1" "max_queued_messages 100000" "max_inflight_messages 20" \
    "max_packet_size 2000000" "memory_limit 4294967296" "sys_interval 1"
"$BERTH_FULL" fleet --mqtt "$url" keygen --out "$BENCH_TMP/key" >/dev/null

# sys_bytes sent|received: the broker's counter (published every second, retained).
sys_bytes() { mosquitto_sub -p "$port" -t "\$SYS/broker/bytes/$1" -C 1 -W 5; }
# wait_line FILE TEXT SECONDS PID: until FILE has a line containing TEXT.
wait_line() {
    local _i
    for _i in $(seq $(($3 * 10))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || die "$(basename "$1" .out) exited: $(tail -n 2 "${1%.out}.err" 2>/dev/null | tr '\n' ' ')"
        sleep 0.1
    done
    die "no '$2' in $1 after $3 s"
}

push_s=() fan_s=() sent_mb=() recv_mb=() sim_kib=() fan_kib=() resent=() dups=() fan_sent_mb=()
for r in $(seq "$rounds"); do
    # berth: a fresh simulated fleet, one push to all of it.
    "$LAB" fleet-sim --mqtt "$url" --devices "$devices" --prefix "sim$r-" --trust "$BENCH_TMP/key.pub" --group "fleet$r" \
        >"$BENCH_TMP/sim.out" 2>"$BENCH_TMP/sim.err" &
    SIM=$!
    wait_line "$BENCH_TMP/sim.out" "$devices devices online" 60 "$SIM"
    sleep 1.5   # their retained states are in, the $SYS counters have moved past the connections
    s0=$(sys_bytes sent) r0=$(sys_bytes received)
    s=$EPOCHREALTIME
    rc=0
    timeout 240 "$BERTH_FULL" fleet --mqtt "$url" push --key "$BENCH_TMP/key" --group "fleet$r" --health-window 1 "$tarball" \
        --run "--name app bench:1" >"$BENCH_TMP/push.out" 2>"$BENCH_TMP/push.err" || rc=$?
    [ "$rc" != 124 ] || die "the push did not end in 240 s ($(grep -c ': committed$' "$BENCH_TMP/push.out" || true) devices shown committed; $(tail -n 1 "$BENCH_TMP/sim.out"))"
    [ "$rc" = 0 ] || die "push failed: $(tail -n 3 "$BENCH_TMP/push.err" | tr '\n' ' ')"
    e=$EPOCHREALTIME
    push_s+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')")
    committed=$(grep -c ': committed app' "$BENCH_TMP/push.out" || true)
    [ "$committed" = "$devices" ] || die "$committed of $devices devices committed"
    sleep 2.2   # the counters are republished every second
    s1=$(sys_bytes sent) r1=$(sys_bytes received)
    sent_mb+=("$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')")
    recv_mb+=("$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')")
    resent+=("$(sed -n 's/^chunks: [0-9]* sent, \([0-9]*\) resent$/\1/p' "$BENCH_TMP/push.out")")
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SIM/status")
    sim_kib+=("$(awk -v k="$hwm" -v n="$devices" 'BEGIN { printf "%.1f", k / n }')")
    stop "$SIM"
    SIM=''
    dups+=("$(sed -n 's/.* \([0-9]*\) duplicates, \([0-9]*\) after the end.*/\1+\2/p' "$BENCH_TMP/sim.out")")

    # peer: the same number of 96 KiB QoS 1 messages fanned out by the broker to as many clients.
    head -c "$chunk" /dev/urandom >"$BENCH_TMP/chunk"
    "$LAB" fleet-sim --mqtt "$url" --devices "$devices" --prefix "fan$r-" --fanout "bench/fan$r" --messages "$nchunks" \
        >"$BENCH_TMP/fan.out" 2>"$BENCH_TMP/fan.err" &
    FAN=$!
    wait_line "$BENCH_TMP/fan.out" "$devices subscribed" 60 "$FAN"
    sleep 1.5
    f0=$(sys_bytes sent)
    s=$EPOCHREALTIME
    mosquitto_pub -p "$port" -q 1 -t "bench/fan$r" -f "$BENCH_TMP/chunk" --repeat "$nchunks"
    wait "$FAN" || die "the fan-out subscribers failed: $(tail -n 2 "$BENCH_TMP/fan.err" | tr '\n' ' ')"
    e=$EPOCHREALTIME
    FAN=''
    fan_s+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')")
    fan_kib+=("$(sed -n 's/.*(\([0-9.]*\) KiB per subscriber).*/\1/p' "$BENCH_TMP/fan.out")")
    sleep 2.2
    f1=$(sys_bytes sent)
    fan_sent_mb+=("$(awk -v a="$f0" -v b="$f1" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')")
    log "round $r: push ${push_s[-1]} s (resent ${resent[-1]} chunks; at the devices duplicates+after the end ${dups[-1]}), fan-out ${fan_s[-1]} s; broker sent ${sent_mb[-1]} MB (fan-out ${fan_sent_mb[-1]} MB), received ${recv_mb[-1]} MB; RSS ${sim_kib[-1]} KiB per device, ${fan_kib[-1]} per subscriber"
done

ideal=$(awk -v s="$size" -v n="$devices" 'BEGIN { printf "%.2f", s * n / 1e6 }')
build=$(case "$LAB" in */debug/*) echo "debug build of berth-lab" ;; *) echo "berth-lab $LAB" ;; esac)
emit what="fleet push of a $mb MB update to $devices simulated devices (one loopback mosquitto, 96 KiB chunks)" unit=s \
    berth="$(median "${push_s[@]}")" peer_name="mosquitto fan-out: mosquitto_pub --repeat $nchunks x 96 KiB (QoS 1) to $devices plain subscribers" \
    peer="$(median "${fan_s[@]}")" \
    how="$rounds interleaved rounds; berth: berth fleet push --group (start to exit, every device committed; includes its 2 s group discovery and waiting for $devices states) to berth-lab fleet-sim ($build); $(spread "${push_s[@]}") vs $(spread "${fan_s[@]}"); chunks resent by the sender: ${resent[*]}; chunks the devices received twice + after they had finished (resends fanned out to every device still subscribed): ${dups[*]}"
emit what="broker bytes sent for that push" unit=MB berth="$(median "${sent_mb[@]}")" peer_name="tarball x $devices devices (ideal fan-out)" peer="$ideal" \
    how="mosquitto \$SYS/broker/bytes/sent before and after the push (also the devices' progress, results and states to the sender); per round: ${sent_mb[*]} MB; the fan-out peer's own: ${fan_sent_mb[*]} MB"
emit what="broker bytes received for that push" unit=MB berth="$(median "${recv_mb[@]}")" peer_name="the tarball once" \
    peer="$(awk -v s="$size" 'BEGIN { printf "%.3f", s / 1e6 }')" \
    how="mosquitto \$SYS/broker/bytes/received before and after (the sender's chunks and resends, plus every device's progress, result and state); per round: ${recv_mb[*]} MB"
emit what="peak RSS per simulated device ($devices in one berth-lab fleet-sim)" unit=KiB berth="$(median "${sim_kib[@]}")" \
    peer_name="per plain subscriber (fleet-sim --fanout: same client, no protocol)" peer="$(median "${fan_kib[@]}")" \
    how="VmHWM of the process / devices (its fixed part included), medians of $rounds; per round: ${sim_kib[*]} vs ${fan_kib[*]}"
