#!/usr/bin/env bash
# Row 2: 50 containers (`run -d --net none IMG sleep 3600`) started in parallel, wall time until
# every client has returned; then their removal with one `rm -f` of all 50 (podman: `rm -f -t 0`,
# which kills at once as berth's and Docker's `rm -f` do). berth against podman, interleaved rounds
# (3; --quick 1), each on storage that holds only the image.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
n=${BENCH_PARALLEL:-50}
rounds=$([ -n "$BENCH_QUICK" ] && echo 1 || echo 3)
cleanup() { berth_agent_stop; podman_teardown; }
trap cleanup EXIT

berth_agent_start "$BENCH_TMP/berth"
podman_ok=1
podman_setup "$BENCH_TMP/podman" || { podman_ok=; podman_err="podman load: $(tail -n 2 "$BENCH_TMP/podman/load.err" | tr '\n' ' ')"; }

# start_all TOOL: n clients in parallel; fails if any failed.
start_all() {
    local i pids=() rc=0
    for i in $(seq "$n"); do
        case $1 in
            berth) b run -d --net none --name "p$i" bench:1 sleep 3600 >/dev/null 2>>"$BENCH_TMP/$1.err" & ;;
            podman) pod run -d --pull never --network none --name "p$i" "$PODMAN_IMAGE" sleep 3600 >/dev/null 2>>"$BENCH_TMP/$1.err" & ;;
        esac
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}
rm_all() {
    local names
    mapfile -t names < <(seq -f 'p%g' "$n")
    case $1 in
        berth) b rm -f "${names[@]}" ;;
        podman) pod rm -f -t 0 "${names[@]}" ;;
    esac
}
running() {
    case $1 in
        berth) b ps -q | wc -l ;;
        podman) pod ps -q | wc -l ;;
    esac
}

declare -A st rt err
for r in $(seq "$rounds"); do
    for tool in $(rotated "$r" berth podman); do
        [ -z "${err[$tool]:-}" ] || continue
        if [ "$tool" = podman ] && [ -z "$podman_ok" ]; then err[$tool]=$podman_err; continue; fi
        if ! ms=$(time_ms start_all "$tool"); then
            err[$tool]="round $r: a start failed: $(tail -n 2 "$BENCH_TMP/$tool.err" | tr '\n' ' ' | cut -c1-250)"
            rm_all "$tool" >/dev/null 2>&1 || true
            continue
        fi
        up=$(running "$tool")
        [ "$up" = "$n" ] || err[$tool]="round $r: $up of $n running after the starts returned"
        st[$tool]="${st[$tool]:-} $ms"
        if ms=$(time_ms rm_all "$tool"); then rt[$tool]="${rt[$tool]:-} $ms"; else err[$tool]="round $r: rm -f failed: $(last_err)"; fi
        [ "$tool" != podman ] || podman_quiesce all
        log "round $r $tool: start ${st[$tool]##* } ms, rm ${rt[$tool]##* } ms"
    done
done
[ -z "${err[berth]:-}" ] || die "berth: ${err[berth]}"
for what in start rm; do
    if [ $what = start ]; then
        # shellcheck disable=SC2086
        bt=${st[berth]} pt=${st[podman]:-}; w="$n containers started in parallel (-d, sleeping)"; pn="podman run -d --network none"; c="$n parallel starts, vs podman"
    else
        # shellcheck disable=SC2086
        bt=${rt[berth]} pt=${rt[podman]:-}; w="$n running containers removed (one rm -f)"; pn="podman rm -f -t 0"; c="rm -f of $n running, vs podman"
    fi
    # shellcheck disable=SC2086
    if [ -n "${err[podman]:-}" ] || [ -z "$pt" ]; then
        emit what="$w" chart="$c" unit=ms berth="$(median $bt)" peer_name="$pn" peer= how="$rounds rounds; berth $(spread $bt)" \
            error="podman: ${err[podman]:-no figure}"
    else
        emit what="$w" chart="$c" unit=ms berth="$(median $bt)" peer_name="$pn" peer="$(median $pt)" \
            how="$rounds interleaved rounds, wall time; berth $(spread $bt); podman $(spread $pt)"
    fi
done
