#!/usr/bin/env bash
# Row 1: container start-to-exit of `true` in the busybox image: `berth run --rm --net none`
# against `crun run` and `runc run` of the same rootfs (OCI bundle) and `podman run --rm
# --network none` of the same image; BENCH_RUNS runs each, interleaved: one of each per round,
# each round starting one further along the list (bench/lib.sh: rotated); after podman's, the
# round waits for its leftover `podman container cleanup` and the kernel's teardown.
# crun needs a private mount namespace without the cgroup2 mount on this hybrid host, so every
# contender runs inside that same `unshare -m` wrapper; the wrapper alone, and berth without it,
# are timed as well (for the `how` column).
# When berth is the static build (as the boards run it), the host's glibc build, whose CLI and
# monitors pay ld.so at each start, is timed beside it with an agent of its own (contender `glibc`).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
HOST_BERTH=${BERTH_FULL:-$BERTH}
tfs=$BENCH_TMP/tmpfs tpid='' gdir=$BENCH_TMP/glibc gpid=''
tb() { "$BERTH" --root "$tfs/root" -H "unix://$tfs/agent.sock" "$@"; }
gb() { "$HOST_BERTH" --root "$gdir/root" -H "unix://$gdir/agent.sock" "$@"; }
# stop_agent PID CLI...: removes what the agent behind CLI still has, then stops it.
stop_agent() {
    local pid=$1
    shift
    [ -n "$pid" ] || return 0
    "$@" ps -aq 2>/dev/null | xargs -r "$@" rm -f >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    berth_agent_stop
    podman_teardown
    stop_agent "$tpid" tb
    stop_agent "$gpid" gb
    umount "$tfs" 2>/dev/null || true
}
trap cleanup EXIT
# agent_up CLI...: waits for the agent behind CLI to answer.
agent_up() {
    local _i
    for _i in $(seq 100); do "$@" ps -q >/dev/null 2>&1 && return 0; sleep 0.1; done
    "$@" ps -q >/dev/null
}

berth_agent_start "$BENCH_TMP/berth"
# A second berth whose root (records, logs, the containers' overlay upper dirs) is on tmpfs, as
# runc's and crun's state is (/run): how much of berth's time is its writes to the disk.
mkdir -p "$tfs"
mount -t tmpfs -o size=512m,mode=0700 bench-tmpfs "$tfs"
tb load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
"$BERTH" --root "$tfs/root" -H "unix://$tfs/agent.sock" agent --default-network host </dev/null >>"$BENCH_TMP/agent-tmpfs.log" 2>&1 &
tpid=$!
agent_up tb || die "berth agent on tmpfs did not start: $(tail -n 2 "$BENCH_TMP/agent-tmpfs.log")"
names=(berth crun runc tmpfs bare wrapper podman)
if [ "$BERTH" != "$HOST_BERTH" ]; then
    mkdir -p "$gdir"
    gb load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
    "$HOST_BERTH" --root "$gdir/root" -H "unix://$gdir/agent.sock" agent --default-network host </dev/null >>"$BENCH_TMP/agent-glibc.log" 2>&1 &
    gpid=$!
    agent_up gb || die "berth agent (glibc build) did not start: $(tail -n 2 "$BENCH_TMP/agent-glibc.log")"
    names+=(glibc)
fi
bundle "$BENCH_TMP/bundle" true
podman_ok=1
podman_setup "$BENCH_TMP/podman" || { podman_ok=; podman_err="podman load: $(tail -n 2 "$BENCH_TMP/podman/load.err" | tr '\n' ' ')"; }

declare -A t err
run_one() {
    case "$1" in
        berth) in_wrapper "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" run --rm --net none bench:1 true ;;
        runc|crun) in_wrapper "$1" run -b "$BENCH_TMP/bundle" "bench-$1-$$-$i" ;;
        podman) in_wrapper env CONTAINERS_CONF="$BENCH_WORK/containers.conf" podman --root "$PODMAN_DIR/root" \
            --runroot "$PODMAN_RUN" --tmpdir "$PODMAN_DIR/tmp" --storage-driver overlay --cgroup-manager cgroupfs \
            --events-backend file --runtime runc run --rm --pull never --network none "$PODMAN_IMAGE" true ;;
        wrapper) in_wrapper true ;;
        tmpfs) in_wrapper "$BERTH" --root "$tfs/root" -H "unix://$tfs/agent.sock" run --rm --net none bench:1 true ;;
        glibc) in_wrapper "$HOST_BERTH" --root "$gdir/root" -H "unix://$gdir/agent.sock" run --rm --net none bench:1 true ;;
        bare) "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" run --rm --net none bench:1 true ;;
    esac
}
for i in $(seq "$BENCH_RUNS"); do
    for n in $(rotated "$i" "${names[@]}"); do
        [ -z "${err[$n]:-}" ] || continue
        if [ "$n" = podman ] && [ -z "$podman_ok" ]; then err[$n]=$podman_err; continue; fi
        if ms=$(time_ms run_one "$n"); then
            t[$n]="${t[$n]:-} $ms"
            [ "$n" != podman ] || podman_quiesce all
        else
            err[$n]="run $i failed: $(last_err)"
            log "$n: ${err[$n]}"
            case $n in berth|bare|tmpfs|glibc) die "berth run failed: ${err[$n]}" ;; esac
        fi
    done
done
# CPU time (user + sys) per start-to-exit, summed over every process involved: less sensitive
# to the machine's load than wall time. A batch of BENCH_RUNS per contender: the children of a
# subshell (bash `times`: the wrapper, the CLI or runtime and everything they waited for) plus,
# for berth, the agent's own CPU and that of the monitors and containers it reaped. podman is left
# out: its conmon double-forks, so its CPU would escape this count.
tck=$(getconf CLK_TCK)
ticks_of() { if [ -n "$1" ]; then awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; else echo 0; fi; }
declare -A cpu
for n in berth glibc crun runc; do
    if [ -n "${err[$n]:-}" ] || [ -z "${t[$n]:-}" ]; then continue; fi
    case $n in berth) ap=$AGENT_PID ;; glibc) ap=$gpid ;; *) ap='' ;; esac
    a0=$(ticks_of "$ap")
    c=$( (for i in $(seq "$BENCH_RUNS"); do run_one "$n" >/dev/null 2>&1; done; times) | tail -n 1)
    sleep 0.3
    a1=$(ticks_of "$ap")
    cpu[$n]=$(echo "$c" | awk -v a="$((a1 - a0))" -v t="$tck" -v n="$BENCH_RUNS" '
        function sec(x,  m, s) { m = x; sub(/m.*/, "", m); s = x; sub(/^[0-9]+m/, "", s); sub(/s$/, "", s); return m * 60 + s }
        { printf "%.2f", (sec($1) + sec($2) + a / t) * 1000 / n }')
    log "cpu per run $n: ${cpu[$n]} ms"
done

# shellcheck disable=SC2086
bm=$(median ${t[berth]})
# shellcheck disable=SC2086
bs=$(spread ${t[berth]})
# shellcheck disable=SC2086
if [ "$BERTH" != "$HOST_BERTH" ]; then built="berth: the static build (dist/berth-x86_64, as the boards run it)"; else built="berth: the host build (no fresh static build in dist/)"; fi
wrap="the same unshare -m wrapper around each (crun needs it here; wrapper alone: $(median ${t[wrapper]}) ms median; berth without it: $(median ${t[bare]}) ms median)"
for p in crun runc podman; do
    case $p in
        crun|runc) pn="$p run (OCI bundle, same rootfs)" ;;
        podman) pn="podman run --rm --network none (runc, cgroupfs)" ;;
    esac
    if [ -n "${err[$p]:-}" ] || [ -z "${t[$p]:-}" ]; then
        emit what="start-to-exit of true (busybox), vs $p" chart="run true: start to exit, vs $p" unit=ms berth="$bm" peer_name="$pn" peer= \
            how="$BENCH_RUNS runs; berth $bs" error="$p could not run: ${err[$p]:-no runs}"
        continue
    fi
    # shellcheck disable=SC2086
    emit what="start-to-exit of true (busybox), vs $p" chart="run true: start to exit, vs $p" unit=ms berth="$bm" peer_name="$pn" peer="$(median ${t[$p]})" \
        how="$BENCH_RUNS interleaved runs each, the order rotated each round; berth $bs; $p $(spread ${t[$p]}); $wrap; $built"
done
# shellcheck disable=SC2086
emit what="start-to-exit of true, berth with its root on tmpfs, vs crun" chart="run true, berth root on tmpfs, vs crun" unit=ms \
    berth="$(median ${t[tmpfs]})" peer_name="crun run (state on /run, a tmpfs)" peer="$( [ -n "${t[crun]:-}" ] && median ${t[crun]})" \
    how="the same rounds; berth (--root on tmpfs) $(spread ${t[tmpfs]}); its default root is on disk (here /var/tmp, shared with other builds)" \
    ${err[crun]:+error="crun: ${err[crun]}"}
for p in crun runc; do
    [ -n "${cpu[$p]:-}" ] || continue
    emit what="CPU time (user+sys, all processes) per start-to-exit of true, vs $p" chart="run true: CPU time, vs $p" unit=ms \
        berth="${cpu[berth]}" peer_name="$p run (OCI bundle)" peer="${cpu[$p]}" \
        how="$BENCH_RUNS runs in a batch each, total CPU / runs (bash times for the wrapper, CLI/runtime and their children; berth adds its agent's CPU and its reaped monitors' and containers'); $built"
done
if [ -n "${t[glibc]:-}" ] && [ -n "${t[crun]:-}" ]; then
    # shellcheck disable=SC2086
    emit what="start-to-exit of true, berth's glibc build (the host's, not the boards'), vs crun" chart="run true, berth glibc build, vs crun" unit=ms \
        berth="$(median ${t[glibc]})" peer_name="crun run (OCI bundle, same rootfs)" peer="$(median ${t[crun]})" \
        how="the same rounds; berth's host build (target/release: glibc, ld.so at the CLI and at each monitor's exec) $(spread ${t[glibc]})"
    [ -z "${cpu[glibc]:-}" ] || [ -z "${cpu[crun]:-}" ] || emit what="CPU time per start-to-exit of true, berth's glibc build, vs crun" \
        chart="run true: CPU time, berth glibc build, vs crun" unit=ms berth="${cpu[glibc]}" peer_name="crun run (OCI bundle)" peer="${cpu[crun]}" \
        how="as the CPU row above, with berth's host build and an agent of its own"
fi
