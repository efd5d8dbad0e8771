#!/usr/bin/env bash
# Row 9: container networks. Start-to-exit of `run --rm true` (busybox) on the default bridge,
# against the same on the host network and against `podman run --rm --network bridge` (its CNI
# bridge here); then TCP throughput to a container through a published port (-p, nf_tables DNAT)
# against the same transfer to the container's own address; memory of the agent with 3 user
# networks and 20 containers on them; DNS lookup latency of a container name through berth's
# responder against Docker's embedded DNS (127.0.0.11).
# Everything runs in network namespaces this row makes (`ip netns add`): the berth agent and
# podman in a "board" one (their bridges, rules and NAT live and die there), the client of the
# transfers in an "outside" one joined by a veth pair, and dockerd (Debian's docker.io, with its
# bridge and iptables rules, on a private data and exec root) alone in a third one, so its docker0
# (172.17.0.0/16 as berth0), its NAT rules and its br_netfilter settings live and die there. The
# machine's own network and firewall are not touched.
# BENCH_RUNS runs each, interleaved (one of each per round, the order
# rotated each round: bench/lib.sh rotated).
# bench-timeout: 420
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
ns=bench-net-$$ out=bench-net-out-$$ apid=''
board=10.239.0.1 outside=10.239.0.2
nb() { "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" "$@"; }
# A contender inside the board namespace and the cgroup wrapper every start row uses.
in_ns() { nsenter --net="/run/netns/$ns" -- unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' wrapper "$@"; }
cleanup() {
    set +e   # every step runs, whatever failed before it
    if [ -n "$apid" ]; then
        nb ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" rm -f >/dev/null 2>&1 || true
        kill "$apid" 2>/dev/null || true
        wait "$apid" 2>/dev/null || true
    fi
    podman_teardown
    dockerd_stop
    local n
    for n in "$ns" "$out"; do
        [ ! -e "/run/netns/$n" ] || ip netns del "$n" || log "cannot delete network namespace $n"
    done
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

# Docker on its bridge: dockerd (and the containerd it starts) alone in a namespace of its own
# (bench/lib.sh), with iptables on (its default): its rules are that namespace's.
docker_ok='' docker_err=''
dockerd_start "bench-net-dock-$$"
if [ -n "$DOCKER_ERR" ]; then
    docker_err=$DOCKER_ERR
elif ! dk run --rm bench:1 true >/dev/null 2>"$BENCH_TMP/docker/run.err"; then
    docker_err="docker run on its bridge: $(tail -n 2 "$BENCH_TMP/docker/run.err" | tr '\n' ' ' | cut -c1-300)"
else
    docker_ok=1
fi
[ -n "$docker_ok" ] || log "$docker_err"
log "setup done after $SECONDS s"

declare -A t err
names=(bridge host podman docker)
run_one() {
    case "$1" in
        bridge) in_ns "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" run --rm bench:1 true ;;
        host) in_ns "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" run --rm --net host bench:1 true ;;
        podman) podman_run "$PODMAN_IMAGE" true ;;
        docker) dk run --rm --network bridge bench:1 true ;;
    esac
}
for i in $(seq "$BENCH_RUNS"); do
    for n in $(rotated "$i" "${names[@]}"); do
        [ -z "${err[$n]:-}" ] || continue
        if [ "$n" = podman ] && [ -z "$podman_ok" ]; then err[$n]=$podman_err; continue; fi
        if [ "$n" = docker ] && [ -z "$docker_ok" ]; then err[$n]=$docker_err; continue; fi
        if ms=$(time_ms run_one "$n"); then
            t[$n]="${t[$n]:-} $ms"
            [ "$n" != podman ] || podman_quiesce all
        else
            err[$n]="run $i failed: $(last_err)"
            log "$n: ${err[$n]}"
            case $n in podman | docker) ;; *) die "berth run ($n) failed: ${err[$n]}" ;; esac
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
if [ -n "${err[docker]:-}" ] || [ -z "${t[docker]:-}" ]; then
    emit what="start-to-exit of run --rm true on a bridge, vs Docker" chart="run --rm on a bridge, vs Docker" unit=ms berth="$bm" \
        peer_name="docker run --rm --network bridge" peer= how="$BENCH_RUNS runs; berth $bs" error="docker could not run: ${err[docker]:-no runs}"
else
    # shellcheck disable=SC2086
    emit what="start-to-exit of run --rm true on a bridge, vs Docker" chart="run --rm on a bridge, vs Docker" unit=ms berth="$bm" \
        peer_name="docker run --rm --network bridge (dockerd $(dockerd --version | sed 's/^Docker version \([^,+]*\).*/\1/'), docker0 + iptables)" \
        peer="$(median ${t[docker]})" how="$BENCH_RUNS interleaved runs each; berth $bs; docker $(spread ${t[docker]}); dockerd alone in a network namespace of its own"
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

nb rm -f sink >/dev/null
log "start and throughput rows done after $SECONDS s"

# Memory: 3 user networks with 20 containers (`sleep`) spread over them, as PSS: berth's agent
# plus its per-container monitors, against dockerd + containerd + the 20 containerd shims.
settle() { sleep 1.5; }
spread_run() {  # spread_run CLI...: 3 networks, then 20 containers m1..m20 over them
    local i
    for i in 1 2 3; do "$@" network create "bn$i" >/dev/null || return 1; done
    for i in $(seq 20); do "$@" run -d --network "bn$(( (i - 1) % 3 + 1 ))" --name "m$i" bench:1 sleep 3600 >/dev/null || return 1; done
}
spread_run nb || die "berth: 3 networks and 20 containers: $(tail -n 2 "$BENCH_TMP/b/agent.log")"
settle
# shellcheck disable=SC2046
bmem=$(pss "$apid" $(pgrep -P "$apid" || true)); brss=$(awk '/VmRSS/ {print $2}' "/proc/$apid/status"); bagent=$(pss "$apid")
log "berth, 3 networks + 20 containers: $bmem kB (agent alone: PSS $bagent kB, RSS $brss kB)"
dmem='' mem_err=$docker_err
if [ -n "$docker_ok" ]; then
    if spread_run dk 2>"$BENCH_TMP/docker/spread.err"; then
        settle
        shims() { pids_matching "$DOCK_EXEC/x" | while read -r p; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd-shim ] && echo "$p"; done; return 0; }
        # shellcheck disable=SC2046
        dmem=$(pss "$DOCK_PID" $(pgrep -P "$DOCK_PID" || true) $(shims))
        log "docker, 3 networks + 20 containers: $dmem kB ($(shims | wc -l) shims)"
    else
        mem_err="docker: 3 networks and 20 containers: $(tail -n 2 "$BENCH_TMP/docker/spread.err" | tr '\n' ' ' | cut -c1-300)"
    fi
fi
emit what="memory with 3 user networks and 20 running containers: engine + per-container processes" \
    chart="memory, 3 networks + 20 containers, vs docker" unit=MiB berth="$(kb_to_mb "$bmem")" \
    peer_name="dockerd + containerd + 20 shims" peer="$( [ -n "$dmem" ] && kb_to_mb "$dmem")" \
    how="PSS after 1.5 s idle; berth: agent (PSS $(kb_to_mb "$bagent") MiB, VmRSS $(kb_to_mb "$brss") MiB, its 3 DNS responders included) + 20 monitors; docker: dockerd (its embedded DNS included), containerd, containerd-shim-runc-v2" \
    ${mem_err:+error="$mem_err"}

# DNS: the time for one A question about a container on the same network (m4, on bn1), asked
# from another one's network namespace (m1's) with the same Python client: to berth's responder
# (the gateway, as the container's resolv.conf names it) and to Docker's 127.0.0.11 (the
# container's own NAT rule to dockerd's resolver). 10 warm-up questions, then 300, one at a time:
# inside the burst of berth's per-source flood limit (400, then 200/s; runtime/src/net/dns.rs),
# which would drop the 401st.
lookup() {  # lookup PID SERVER NAME: "median p90 lost" (µs, µs, questions asked again after 1 s) from PID's namespace
    nsenter --net="/proc/$1/ns/net" -- "$PY" - "$2" "$3" <<'PY'
import socket, statistics, struct, sys, time
server, name = sys.argv[1], sys.argv[2]
def query(qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    return q
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((server, 53))
times, lost = [], 0
for i in range(310):
    q = query(i)
    for attempt in range(3):
        t0 = time.perf_counter()
        s.send(q)
        try:
            r = s.recv(512)
            while struct.unpack(">H", r[:2])[0] != i:  # a late answer to an earlier try
                r = s.recv(512)
            break
        except TimeoutError:
            lost += 1
            print(f"question {i} to {server}: no answer in 1 s, asked again", file=sys.stderr)
    else:
        sys.exit(f"{name} at {server}: no answer to question {i} in 3 tries")
    dt = time.perf_counter() - t0
    _, flags, _, an = struct.unpack(">HHHH", r[:8])
    if flags & 0xF != 0 or an < 1:
        sys.exit(f"{name} at {server}: rcode {flags & 0xF}, {an} answers")
    if i >= 10:
        times.append(dt * 1e6)
times.sort()
print(f"{statistics.median(times):.1f} {times[int(len(times) * 0.9)]:.1f} {lost}")
PY
}
bpid=$(nb inspect -f '{{.State.Pid}}' m1)
bserver=$(awk '/^nameserver/ {print $2; exit}' "/proc/$bpid/root/etc/resolv.conf")
res=$(lookup "$bpid" "$bserver" m4 2>"$BENCH_TMP/dns.err") || die "berth DNS lookups from m1's namespace to $bserver: $(tail -n 1 "$BENCH_TMP/dns.err")"
read -r bdns bdns90 blost <<<"$res"
[ ! -s "$BENCH_TMP/dns.err" ] || log "berth: $(tr '\n' ' ' <"$BENCH_TMP/dns.err")"
ddns='' ddns90='' dlost='' dns_err=$mem_err
if [ -n "$dmem" ]; then
    dpid=$(dk inspect -f '{{.State.Pid}}' m1)
    if res=$(lookup "$dpid" 127.0.0.11 m4 2>"$BENCH_TMP/dns.err"); then read -r ddns ddns90 dlost <<<"$res"; else dns_err="docker DNS lookups: $(tail -n 1 "$BENCH_TMP/dns.err")"; fi
fi
log "DNS, median/p90 µs (asked again): berth $bdns/$bdns90 ($blost) at $bserver, docker ${ddns:-?}/${ddns90:-?} (${dlost:-?}) at 127.0.0.11"
emit what="DNS lookup of a container name on a user network, from a container's namespace" chart="DNS lookup, vs Docker's 127.0.0.11" unit=µs \
    berth="$bdns" peer_name="Docker's embedded DNS (127.0.0.11, dockerd $(dockerd --version 2>/dev/null | sed 's/^Docker version \([^,+]*\).*/\1/'))" peer="$ddns" \
    how="300 A questions one at a time (after 10 warm-up; berth's flood limit per source: a burst of 400, then 200/s) from a Python client in m1's network namespace for m4 (3 networks, 20 containers); median; p90 berth $bdns90, docker ${ddns90:-?}; questions retried after 1 s without an answer: berth $blost, docker ${dlost:-?}" \
    ${dns_err:+error="$dns_err"}
