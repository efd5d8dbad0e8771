#!/usr/bin/env bash
# Row 7: memory-limit accuracy. A container under a 64 MiB limit runs /bin/alloc (bench/alloc.c,
# static), which touches memory in 64 KiB steps and prints the total after each step until the kernel kills it: the
# last number printed is how much it held when killed. berth (`run --rm -m 64m`) against crun and
# runc (`linux.resources.memory.limit` = 64 MiB, swap the same) of the same rootfs, crun and runc in
# the unshare wrapper (bench/lib.sh), and `podman run -m 64m` of the same image. 3 interleaved runs each; closer to 64 is more accurate (what
# is missing is the runtime's and the kernel's own charges to the container's cgroup).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
limit=64
cleanup() { berth_agent_stop; podman_teardown; }
trap cleanup EXIT
berth_agent_start "$BENCH_TMP/berth"
BUNDLE_MEMORY=$((limit * 1048576)) bundle "$BENCH_TMP/bundle" /bin/alloc 4096
podman_ok=1
podman_setup "$BENCH_TMP/podman" || podman_ok=
one() {   # one TOOL RUN: prints "EXIT-STATUS MIB-REACHED"
    local rc=0
    case $1 in
        berth) b run --rm --net none -m "${limit}m" bench:1 /bin/alloc 4096 >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" || rc=$? ;;
        crun|runc) in_wrapper "$1" run -b "$BENCH_TMP/bundle" "bench-mem-$1-$$-$2" >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" || rc=$? ;;
        podman) if [ -n "$podman_ok" ]; then
                pod run --rm --pull never --network none -m "${limit}m" "$PODMAN_IMAGE" /bin/alloc 4096 >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" || rc=$?
            else
                : >"$BENCH_TMP/out"; cp "$BENCH_TMP/podman/load.err" "$BENCH_TMP/err"; rc=125
            fi ;;
    esac
    local kib
    kib=$(tail -n 1 "$BENCH_TMP/out")
    echo "$rc $( [ -n "$kib" ] && awk -v k="$kib" 'BEGIN { printf "%.2f", k / 1024 }')"
}
declare -A v err codes
for r in 1 2 3; do
    for n in berth crun runc podman; do
        [ -z "${err[$n]:-}" ] || continue
        read -r rc got <<<"$(one "$n" "$r")"
        if [ "$rc" = 0 ] || [ -z "$got" ]; then
            err[$n]="run $r: exit $rc after ${got:-0} MiB, not killed: $(tail -n 2 "$BENCH_TMP/err" | tr '\n' ' ' | cut -c1-200)"
            log "$n: ${err[$n]}"
            continue
        fi
        v[$n]="${v[$n]:-} $got"; codes[$n]="${codes[$n]:-} $rc"
        log "run $r $n: killed (exit $rc) after $got MiB"
    done
done
[ -z "${err[berth]:-}" ] || die "berth: ${err[berth]}"
# shellcheck disable=SC2086
bm=$(median ${v[berth]})
for p in crun runc podman; do
    case $p in podman) pn="podman run -m ${limit}m (runc)" ;; *) pn="$p run (same rootfs)" ;; esac
    if [ -n "${err[$p]:-}" ]; then
        emit what="memory reached under a ${limit} MiB limit before the OOM kill" chart="reached under -m ${limit}m, vs $p" unit=MiB better=closer limit="$limit" \
            berth="$bm" peer_name="$pn" peer= how="" error="$p: ${err[$p]}"
        continue
    fi
    # shellcheck disable=SC2086
    emit what="memory reached under a ${limit} MiB limit before the OOM kill" chart="reached under -m ${limit}m, vs $p" unit=MiB better=closer limit="$limit" \
        berth="$bm" peer_name="$pn" peer="$(median ${v[$p]})" \
        how="3 interleaved runs, 64 KiB steps, median; berth MiB:${v[berth]} (exit${codes[berth]}); $p MiB:${v[$p]} (exit${codes[$p]})"
done
