#!/usr/bin/env bash
# Scale: 200 containers (`sleep`) started one after another on one agent, then removed
# (issue 21, item 6). What must stay flat as the count grows: the time of each `run -d` and
# `rm -f`, and the agent's own memory. Batches of 20: each batch's median start time is kept, and
# the agent's PSS (the agent process alone: the monitors are per-container and counted by the
# memory row) after it. The peer is podman (runc, conmon, cgroupfs) doing the same, sequentially,
# in the same run: its time per container at the same counts. --quick: 60 containers.
# bench-timeout: 900
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
cleanup() {
    berth_agent_stop
    podman_teardown
}
trap cleanup EXIT
n=200 batch=20
[ -z "${BENCH_QUICK:-}" ] || n=60

# run_batches START REMOVE NAME: starts n containers with START i, batch by batch; prints one line
# per batch: "median_ms agent_pss_kb" (the PSS field is 0 when AGENT_PID is unset).
run_batches() {
    local start=$1 i ms t=()
    for i in $(seq "$n"); do
        ms=$(time_ms "$start" "$i") || die "$start $i failed: $(last_err)"
        t+=("$ms")
        if [ $((i % batch)) -eq 0 ]; then
            echo "$(median "${t[@]}") $( [ -n "${AGENT_PID:-}" ] && pss "$AGENT_PID" || echo 0)"
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
sleep 1
b_start() { b run -d --net none --name "s$1" bench:1 sleep 3600; }
b_rm() { b rm -f "s$1"; }
pss0=$(pss "$AGENT_PID")
mapfile -t bb < <(run_batches b_start)
[ "${#bb[@]}" -eq $((n / batch)) ] || die "berth: ${#bb[@]} batches of $((n / batch))"
running=$(b ps -q | wc -l)
[ "$running" -eq "$n" ] || die "berth: $running of $n containers running"
read -r brm_first brm_last <<<"$(rm_all b_rm)"
[ -n "$brm_last" ] || die "berth rm failed"
left=$(b ps -aq | wc -l)
[ "$left" -eq 0 ] || die "berth: $left containers left after rm"
pss_end=$(pss "$AGENT_PID")
berth_agent_stop
read -r b_first_ms b_first_pss <<<"${bb[0]}"
read -r b_last_ms b_last_pss <<<"${bb[-1]}"
log "berth: start ms per batch: $(printf '%s ' "${bb[@]%% *}"); agent PSS kB: $pss0 → $(printf '%s ' "${bb[@]##* }") → $pss_end after rm; rm ms first/last batch: $brm_first/$brm_last"

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
emit what="agent memory with $n containers vs with $batch (flat is 1)" chart="scale: agent PSS growth" unit=x \
    berth="$(ratio "$b_last_pss" "$b_first_pss")" peer_name="flat (1.0, the target)" peer=1 \
    how="the agent process's PSS: $pss0 kB idle, $b_first_pss kB at $batch, $b_last_pss kB at $n, $pss_end kB after removing them all (monitors excluded: one per container, see the memory row)"
