#!/usr/bin/env bash
# Scale: 200 containers (`sleep`) started one after another on one agent, then removed
# (issue 21, item 6). What must stay flat as the count grows: the time of each `run -d` and
# `rm -f`, and the agent's own memory. Batches of 20: each batch's median start time is kept, and
# the agent's memory after it (the agent process alone: the monitors are per-container and counted
# by the memory row): its RSS, and the anonymous part of it (its heap: what it keeps per container).
# Not PSS: the agent shares its text with every monitor, so its PSS falls as containers start and
# rises as they go, which hid what the agent itself holds. Peers, doing the same sequentially in
# the same run: podman (runc, conmon, cgroupfs) for the time per container at the same counts (it
# has no daemon), and Docker (dockerd and its containerd, in a network namespace of their own) for
# the daemons' memory added per container (their shims, one per container, excluded as berth's
# monitors are). --quick: 60 containers.
# bench-timeout: 900
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
cleanup() {
    berth_agent_stop
    podman_teardown
    dockerd_stop
}
trap cleanup EXIT
n=200 batch=20
[ -z "${BENCH_QUICK:-}" ] || n=60

# agent_mem: "rss_kb anon_kb" of the daemon processes in DAEMON_PIDS ("0 0" when it is empty).
DAEMON_PIDS=''
agent_mem() {
    # shellcheck disable=SC2086 # a list of pids
    echo "$(smaps_kb Rss $DAEMON_PIDS) $(smaps_kb Anonymous $DAEMON_PIDS)"
}

# run_batches START REMOVE NAME: starts n containers with START i, batch by batch; prints one line
# per batch: "median_ms agent_rss_kb agent_anon_kb" (0 0 when AGENT_PID is unset).
run_batches() {
    local start=$1 i ms t=()
    for i in $(seq "$n"); do
        ms=$(time_ms "$start" "$i") || die "$start $i failed: $(last_err)"
        t+=("$ms")
        if [ $((i % batch)) -eq 0 ]; then
            echo "$(median "${t[@]}") $(agent_mem)"
            t=()
        fi
    done
}
# rm_all REMOVE: removes the n containers, newest first (the count falls from n); prints the median
# per-container time of the first batch (count near n) and of the last (count near 0).
rm_all() {
    local remove=$1 i ms first=() last=()
    for i in $(seq "$n" -1 1); do
        ms=$(time_ms "$remove" "$i") || die "$remove $i failed: $(last_err)"
        if [ "$i" -gt $((n - batch)) ]; then first+=("$ms"); elif [ "$i" -le "$batch" ]; then last+=("$ms"); fi
    done
    echo "$(median "${first[@]}") $(median "${last[@]}")"
}

# --- berth
berth_agent_start "$BENCH_TMP/berth"
DAEMON_PIDS=$AGENT_PID
sleep 1
b_start() { b run -d --net none --name "s$1" bench:1 sleep 3600; }
b_rm() { b rm -f "s$1"; }
mem0=$(agent_mem)
mapfile -t bb < <(run_batches b_start)
[ "${#bb[@]}" -eq $((n / batch)) ] || die "berth: ${#bb[@]} batches of $((n / batch))"
running=$(b ps -q | wc -l)
[ "$running" -eq "$n" ] || die "berth: $running of $n containers running"
read -r brm_first brm_last <<<"$(rm_all b_rm)"
[ -n "$brm_last" ] || die "berth rm failed"
left=$(b ps -aq | wc -l)
[ "$left" -eq 0 ] || die "berth: $left containers left after rm"
mem_end=$(agent_mem)
berth_agent_stop
DAEMON_PIDS=''
read -r b_first_ms b_first_rss b_first_anon <<<"${bb[0]}"
read -r b_last_ms b_last_rss b_last_anon <<<"${bb[-1]}"
read -r rss0 anon0 <<<"$mem0"
read -r rss_end anon_end <<<"$mem_end"
log "berth: start ms per batch: $(printf '%s ' "${bb[@]%% *}"); agent RSS/anonymous kB: $rss0/$anon0 → $(for x in "${bb[@]}"; do read -r _ r an <<<"$x"; printf '%s/%s ' "$r" "$an"; done) → $rss_end/$anon_end after rm; rm ms first/last batch: $brm_first/$brm_last"

# --- podman
p_err='' p_first_ms='' p_last_ms='' prm_first='' prm_last=''
if podman_setup "$BENCH_TMP/podman"; then
    p_start() { pod run -d --pull never --network none --name "s$1" "$PODMAN_IMAGE" sleep 3600; }
    p_rm() { pod rm -f -t 0 "s$1"; }
    if pb=$(run_batches p_start 2>"$BENCH_TMP/podman.err"); then
        mapfile -t pbl <<<"$pb"
        read -r p_first_ms _ <<<"${pbl[0]}"
        read -r p_last_ms _ <<<"${pbl[-1]}"
        if r=$(rm_all p_rm 2>>"$BENCH_TMP/podman.err"); then
            read -r prm_first prm_last <<<"$r"
        else
            p_err="podman rm: $(tail -n 1 "$BENCH_TMP/podman.err")"
        fi
        log "podman: start ms per batch: $(printf '%s ' "${pbl[@]%% *}"); rm ms first/last batch: ${prm_first:-?}/${prm_last:-?}"
    else
        p_err="podman run: $(tail -n 1 "$BENCH_TMP/podman.err")"
    fi
    podman_teardown
else
    p_err="podman load: $(tail -n 2 "$BENCH_TMP/podman/load.err" | tr '\n' ' ')"
fi

# --- docker: the daemons' memory only
d_err='' d_per_kb=''
dockerd_start "bench-scale-$$"
if [ -n "$DOCKER_ERR" ]; then
    d_err=$DOCKER_ERR
else
    DAEMON_PIDS="$DOCK_PID $(pgrep -P "$DOCK_PID" -x containerd || true)"
    d_start() { dk run -d --network none --name "s$1" bench:1 sleep 3600; }
    if db=$(run_batches d_start 2>"$BENCH_TMP/docker.err"); then
        mapfile -t dbl <<<"$db"
        read -r _ d_first_rss d_first_anon <<<"${dbl[0]}"
        read -r _ d_last_rss d_last_anon <<<"${dbl[-1]}"
        d_per_kb=$(awk -v a="$d_last_anon" -v b="$d_first_anon" -v n=$((n - batch)) 'BEGIN { printf "%.2f", (a - b) / n }')
        log "docker: dockerd + containerd RSS/anonymous kB: $d_first_rss/$d_first_anon at $batch, $d_last_rss/$d_last_anon at $n"
    else
        d_err="docker run: $(tail -n 1 "$BENCH_TMP/docker.err")"
    fi
    DAEMON_PIDS=''
fi
dockerd_stop

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
how="$n containers started one after another in batches of $batch (median per batch), then removed newest first"
emit what="run -d with $((n - batch))–$n already running: time per container" chart="scale: run -d at $n, vs podman" unit=ms \
    berth="$b_last_ms" peer_name="podman run -d (runc, conmon), same count" peer="$p_last_ms" \
    how="$how; first batch: berth $b_first_ms ms, podman ${p_first_ms:-?} ms" ${p_err:+error="podman: $p_err"}
emit what="run -d growth: time per container, last batch / first batch (flat is 1)" chart="scale: run -d growth, vs podman" unit=x \
    berth="$(ratio "$b_last_ms" "$b_first_ms")" peer_name="podman's growth" \
    peer="$( [ -n "$p_first_ms" ] && ratio "$p_last_ms" "$p_first_ms")" how="$how" ${p_err:+error="podman: $p_err"}
emit what="rm -f with $n running: time per container" chart="scale: rm -f at $n, vs podman" unit=ms \
    berth="$brm_first" peer_name="podman rm -f -t 0, same count" peer="$prm_first" \
    how="$how; last batch (near 0): berth $brm_last ms, podman ${prm_last:-?} ms" ${p_err:+error="podman: $p_err"}
per_kb=$(awk -v a="$b_last_anon" -v b="$b_first_anon" -v n=$((n - batch)) 'BEGIN { printf "%.2f", (a - b) / n }')
emit what="daemon memory added per container, $batch to $n running (anonymous)" chart="scale: daemon memory per container, vs docker" unit=kB \
    berth="$per_kb" peer_name="dockerd + containerd, same containers" peer="$d_per_kb" \
    how="$how; the daemons' anonymous memory at $batch and at $n containers, difference / $((n - batch)); berth: its agent ($b_first_anon → $b_last_anon kB); docker: dockerd and containerd (${d_first_anon:-?} → ${d_last_anon:-?} kB); per-container processes (berth's monitors, docker's shims) are in neither" ${d_err:+error="docker: $d_err"}
emit what="agent memory with $n containers vs with $batch (RSS; flat is 1)" chart="scale: agent memory growth" unit=x \
    berth="$(ratio "$b_last_rss" "$b_first_rss")" peer_name="flat (1.0, the target)" peer=1 \
    how="the agent process's RSS: $rss0 kB idle, $b_first_rss kB at $batch, $b_last_rss kB at $n, $rss_end kB after removing them all; its anonymous memory: $anon0, $b_first_anon, $b_last_anon, $anon_end kB (monitors excluded: one per container, see the memory row)"
