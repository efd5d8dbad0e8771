#!/usr/bin/env bash
# Row 97: flash wear (issue 18). Bytes written to the disk that holds the engine's root, read from
# the kernel's block statistics (/sys/block/loopN/stat, sectors written), as scripts/power-cut
# --wear reads them on the emulated board. berth and podman (conmon, `--log-driver k8s-file`) each
# get an ext4 file system of their own on a loop device, made and mounted as the board's data
# partition is (`mkfs.ext4 -i 4096`, `-o lazytime`), holding all their state (berth: --root;
# podman: --root and --tmpdir; its run root stays in /tmp as berth's /run does). Measured:
# 10 containers each logging a line a second (both engines at once, each on its own disk;
# 300 s, --quick 60 s, scaled to an hour) and `run -d` + `stop` + `rm` of a container (5 each).
# Each figure lies between two settled points: sync, 6 s for ext4's 5 s journal commit, sync.
# bench-timeout: 900
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
secs=$([ -n "${BENCH_QUICK:-}" ] && echo 60 || echo 300)
loops=()
cleanup() {
    berth_agent_stop
    podman_teardown
    local l
    for m in "$BENCH_TMP"/mnt-*; do
        [ -d "$m" ] || continue
        unmount_under "$m"
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}
trap cleanup EXIT
# disk NAME: an ext4 on a loop device mounted at $BENCH_TMP/mnt-NAME; prints the device.
disk() {
    local img=$BENCH_TMP/$1.img mnt=$BENCH_TMP/mnt-$1 dev
    truncate -s 1G "$img"
    mkfs.ext4 -F -q -i 4096 "$img"
    dev=$(losetup -f --show "$img")
    mkdir -p "$mnt"
    mount -t ext4 -o lazytime "$dev" "$mnt"
    echo "$dev"
}
written() { echo $(( $(awk '{print $7}' "/sys/block/${1#/dev/}/stat") * 512 )); }   # sectors: awk would print a large product as 3.1e+09
settle() { sync; sleep 6; sync; }
bdev=$(disk berth); loops+=("$bdev")
pdev=$(disk podman); loops+=("$pdev")
berth_agent_start "$BENCH_TMP/mnt-berth/b"
podman_ok=1 podman_err=''
podman_setup "$BENCH_TMP/mnt-podman/p" || { podman_ok=; podman_err="podman load: $(tail -n 2 "$BENCH_TMP/mnt-podman/p/load.err" | tr '\n' ' ')"; }
logger='i=0; while :; do echo "line $i of a container that logs a line a second"; i=$((i+1)); sleep 1; done'

# --- 10 containers logging a line a second, both engines at once --------------------------------
for i in $(seq 10); do
    b run -d --net none --name "log$i" bench:1 sh -c "$logger" >/dev/null || die "berth run log$i failed"
    if [ -n "$podman_ok" ]; then
        pod run -d --pull never --network none --log-driver k8s-file --name "log$i" "$PODMAN_IMAGE" sh -c "$logger" \
            >/dev/null 2>"$BENCH_TMP/perr" || { podman_ok=; podman_err="podman run: $(tail -n 2 "$BENCH_TMP/perr" | tr '\n' ' ')"; }
    fi
done
[ -z "$podman_ok" ] || podman_quiesce
settle
b0=$(written "$bdev") p0=$(written "$pdev")
log "10 loggers each, measuring ${secs} s"
sleep "$secs"
settle
b1=$(written "$bdev") p1=$(written "$pdev")
lines=$(b logs log1 | wc -l)
[ "$lines" -ge "$secs" ] || die "berth logs log1: only $lines lines after ${secs} s"
per_hour() { awk -v a="$1" -v b="$2" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) * 3600 / s / 1048576 }'; }
bh=$(per_hour "$b0" "$b1") ph=$(per_hour "$p0" "$p1")
log "logging: berth $bh MiB/h, podman $ph MiB/h"
for i in $(seq 10); do b rm -f "log$i" >/dev/null; done
[ -z "$podman_ok" ] || { pod rm -f -t 0 $(seq -f 'log%g' 10) >/dev/null 2>&1 || true; podman_quiesce all; }
how="${secs} s measured, scaled to an hour; ext4 -o lazytime on a loop device each; sync + 6 s + sync at both ends"
if [ -n "$podman_ok" ]; then
    emit what="bytes written per hour: 10 containers each logging a line a second" chart="log wear, 10 × 1 line/s, vs podman" unit=MiB/h \
        berth="$bh" peer_name="podman run --log-driver k8s-file (conmon)" peer="$ph" how="$how; berth $((b1 - b0)) B, podman $((p1 - p0)) B"
else
    emit what="bytes written per hour: 10 containers each logging a line a second" chart="log wear, 10 × 1 line/s, vs podman" unit=MiB/h \
        berth="$bh" peer_name="podman run --log-driver k8s-file (conmon)" peer= how="$how" error="$podman_err"
fi

# --- run -d + stop + rm, 5 containers, one engine at a time --------------------------------------
cycle() {  # cycle berth|podman: prints bytes written per container
    local dev w0 w1 i
    if [ "$1" = berth ]; then dev=$bdev; else dev=$pdev; fi
    settle
    w0=$(written "$dev")
    for i in 1 2 3 4 5; do
        if [ "$1" = berth ]; then
            b run -d --net none --name "w$i" bench:1 sleep 600 >/dev/null && b stop -t 1 "w$i" >/dev/null && b rm "w$i" >/dev/null || return 1
        else
            pod run -d --pull never --network none --name "w$i" "$PODMAN_IMAGE" sleep 600 >/dev/null 2>"$BENCH_TMP/perr" \
                && pod stop -t 1 "w$i" >/dev/null 2>>"$BENCH_TMP/perr" && pod rm "w$i" >/dev/null 2>>"$BENCH_TMP/perr" || return 1
            podman_quiesce all
        fi
    done
    settle
    w1=$(written "$dev")
    awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.1f", (b - a) / 5 / 1024 }'
}
bc=$(cycle berth) || die "berth run/stop/rm failed"
pc='' 
if [ -n "$podman_ok" ]; then pc=$(cycle podman) || { podman_ok=; podman_err="podman run/stop/rm: $(tail -n 2 "$BENCH_TMP/perr" | tr '\n' ' ')"; }; fi
log "run+stop+rm: berth $bc KiB, podman ${pc:-n/a} KiB"
how="5 containers, run -d, stop -t 1, rm; sync + 6 s + sync at both ends; ext4 -o lazytime on a loop device each"
if [ -n "$podman_ok" ]; then
    emit what="bytes written per container run -d + stop + rm" chart="run/stop/rm wear, vs podman" unit=KiB \
        berth="$bc" peer_name="podman run -d / stop / rm" peer="$pc" how="$how"
else
    emit what="bytes written per container run -d + stop + rm" chart="run/stop/rm wear, vs podman" unit=KiB \
        berth="$bc" peer_name="podman run -d / stop / rm" peer= how="$how" error="$podman_err"
fi
