#!/usr/bin/env bash
# Row 9: container networks. Start-to-exit of `run --rm true` (busybox) on the default bridge,
# against the same on the host network and against `podman run --rm --network bridge` (its CNI
# bridge here); then TCP throughput to a container through a published port (-p, nf_tables DNAT)
# against the same transfer to the container's own address.
# Everything runs in network namespaces this row makes (`ip netns add`): the berth agent and
# podman in a "board" one (their bridges, rules and NAT live and die there), the client of the
# transfers in an "outside" one joined by a veth pair. The machine's own network is not touched.
# BENCH_RUNS runs each, interleaved (one of each per round).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
ns=bench-net-$$ out=bench-net-out-$$ apid=''
board=10.239.0.1 outside=10.239.0.2
nb() { "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" "$@"; }
# A contender inside the board namespace and the cgroup wrapper every start row uses.
in_ns() { nsenter --net="/run/netns/$ns" -- unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' wrapper "$@"; }
cleanup() {
    if [ -n "$apid" ]; then
        nb ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" rm -f >/dev/null 2>&1 || true
        kill "$apid" 2>/dev/null || true
        wait "$apid" 2>/dev/null || true
    fi
    podman_teardown
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$out" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$ns"
ip netns add "$out"
ip -n "$ns" link set lo up
ip -n "$out" link set lo up
ip -n "$ns" link add vbench0 type veth peer name vbench1 netns "$out"
ip -n "$ns" addr add "$board/24" dev vbench0
ip -n "$out" addr add "$outside/24" dev vbench1
ip -n "$ns" link set vbench0 up
ip -n "$out" link set vbench1 up

mkdir -p "$BENCH_TMP/b"
nb load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
nsenter --net="/run/netns/$ns" -- "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" agent \
    </dev/null >>"$BENCH_TMP/b/agent.log" 2>&1 &
apid=$!
for _ in $(seq 100); do [ -S "$BENCH_TMP/b/agent.sock" ] && break; sleep 0.1; done
[ -S "$BENCH_TMP/b/agent.sock" ] || die "berth agent did not start: $(tail -n 2 "$BENCH_TMP/b/agent.log")"
nb run --rm bench:1 true >/dev/null || die "berth run on the default bridge failed: $(tail -n 2 "$BENCH_TMP/b/agent.log")"

podman_ok=1 podman_err=''
podman_setup "$BENCH_TMP/podman" || { podman_ok=; podman_err="podman load: $(tail -n 2 "$BENCH_TMP/podman/load.err" | tr '\n' ' ')"; }
podman_run() {
    in_ns env CONTAINERS_CONF="$BENCH_WORK/containers.conf" podman --root "$PODMAN_DIR/root" --runroot "$PODMAN_RUN" \
        --tmpdir "$PODMAN_DIR/tmp" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime runc \
        run --rm --pull never --network bridge "$@"
}
if [ -n "$podman_ok" ] && ! podman_run "$PODMAN_IMAGE" true >/dev/null 2>"$BENCH_TMP/podman.err"; then
    podman_ok='' podman_err="podman run --network bridge: $(tail -n 2 "$BENCH_TMP/podman.err" | tr '\n' ' ' | cut -c1-200)"
    log "$podman_err"
fi

declare -A t err
names=(bridge host podman)
run_one() {
    case "$1" in
        bridge) in_ns "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" run --rm bench:1 true ;;
        host) in_ns "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" run --rm --net host bench:1 true ;;
        podman) podman_run "$PODMAN_IMAGE" true ;;
    esac
}
for i in $(seq "$BENCH_RUNS"); do
    for n in "${names[@]}"; do
        [ -z "${err[$n]:-}" ] || continue
        if [ "$n" = podman ] && [ -z "$podman_ok" ]; then err[$n]=$podman_err; continue; fi
        if ms=$(time_ms run_one "$n"); then
            t[$n]="${t[$n]:-} $ms"
            [ "$n" != podman ] || podman_quiesce all
        else
            err[$n]="run $i failed: $(last_err)"
            log "$n: ${err[$n]}"
            [ "$n" = podman ] || die "berth run ($n) failed: ${err[$n]}"
        fi
    done
done
# shellcheck disable=SC2086
bm=$(median ${t[bridge]})
# shellcheck disable=SC2086
bs=$(spread ${t[bridge]})
# shellcheck disable=SC2086
emit what="start-to-exit of run --rm true on the default bridge, vs the host network" chart="run --rm: bridge vs host network" \
    unit=ms berth="$bm" peer_name="berth run --rm --net host (same agent)" peer="$(median ${t[host]})" \
    how="$BENCH_RUNS interleaved runs each; bridge $bs; host $(spread ${t[host]}); the bridge's cost: veth, address, rules, hosts files"
if [ -n "${err[podman]:-}" ] || [ -z "${t[podman]:-}" ]; then
    emit what="start-to-exit of run --rm true on a bridge, vs podman" chart="run --rm on a bridge, vs podman" unit=ms berth="$bm" \
        peer_name="podman run --rm --network bridge" peer= how="$BENCH_RUNS runs; berth $bs" error="podman could not run: ${err[podman]:-no runs}"
else
    # shellcheck disable=SC2086
    emit what="start-to-exit of run --rm true on a bridge, vs podman" chart="run --rm on a bridge, vs podman" unit=ms berth="$bm" \
        peer_name="podman run --rm --network bridge ($(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null || echo '?'), runc)" \
        peer="$(median ${t[podman]})" how="$BENCH_RUNS interleaved runs each; berth $bs; podman $(spread ${t[podman]}); both in the same test-made network namespace"
fi

# Throughput: MB from the outside namespace into a container (a sink), through the published
# port on the board's address and straight to the container's address (the outside gets a route
# to the bridge's subnet through the board for that).
mb=${BENCH_NET_MB:-200}
[ -z "${BENCH_QUICK:-}" ] || mb=50
nb run -d --name sink -p 8080:80 bench:1 busybox nc -ll -p 80 -e sh -c 'cat >/dev/null' >/dev/null
cip=$(nb inspect -f '{{.NetworkSettings.IPAddress}}' sink)
ip -n "$out" route add 172.17.0.0/16 via "$board"
send() {
    ip netns exec "$out" "$PY" - "$1" "$2" "$mb" <<'PY'
import socket, sys, time
host, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"\0" * (1 << 20)
s = socket.create_connection((host, port), timeout=10)
t0 = time.monotonic()
for _ in range(mb):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(f"{mb / (time.monotonic() - t0):.1f}")
PY
}
runs=$(( BENCH_RUNS < 10 ? BENCH_RUNS : 10 ))
declare -A tp
for _ in $(seq "$runs"); do
    for w in published direct; do
        case $w in
            published) v=$(send "$board" 8080) ;;
            direct) v=$(send "$cip" 80) ;;
        esac
        tp[$w]="${tp[$w]:-} $v"
    done
done
# shellcheck disable=SC2086
emit what="TCP throughput into a container through a published port, vs to its own address" chart="TCP via -p vs direct" \
    unit=MB/s berth="$(median ${tp[published]})" peer_name="the same transfer to the container's address (no DNAT)" \
    peer="$(median ${tp[direct]})" better=higher \
    how="$runs interleaved transfers of $mb MB each from a second namespace over a veth pair; published $(spread ${tp[published]}); direct $(spread ${tp[direct]})"
