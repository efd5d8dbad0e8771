#!/usr/bin/env bash
# Row 8: images made on the board. (a) A 10-step Dockerfile (ARG, ENV, WORKDIR, 3 COPY, 3 RUN,
# CMD) on the bench image: `berth build` vs `buildah bud` (runc, docker format, --layers so it
# caches too), cold (--no-cache) and cached (the same build again); wall time and the CLI's peak
# RSS (GNU time %M). (b) `commit` of a container that wrote 50 MB of files: `berth commit` vs
# `podman commit`. 3 interleaved rounds (--quick 1).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
rounds=$([ -n "$BENCH_QUICK" ] && echo 1 || echo 3)
cleanup() {
    berth_agent_stop
    podman_teardown
    buildah --root "$BENCH_TMP/buildah/root" --runroot "$BENCH_TMP/buildah/run" rm -a >/dev/null 2>&1 || true
    unmount_under "$BENCH_TMP/buildah"
}
trap cleanup EXIT

ctx=$BENCH_TMP/ctx
mkdir -p "$ctx/app" "$ctx/data"
head -c 2000000 /dev/urandom >"$ctx/data/blob.bin"
for i in $(seq 50); do echo "file $i" >"$ctx/app/f$i.txt"; done
echo 'echo ok' >"$ctx/app/run.sh"
cat >"$ctx/Dockerfile" <<'EOF'
FROM bench:1
ARG LEVEL=3
ENV APP=/srv/app MODE=bench
WORKDIR /srv/app
COPY app/ ./
COPY data/blob.bin /var/lib/blob.bin
RUN busybox mkdir -p out && for i in 1 2 3 4 5; do echo "$i $LEVEL" >> out/log; done
RUN busybox dd if=/dev/zero of=/srv/app/out/zero bs=1k count=512 2>/dev/null
COPY app/run.sh /usr/local/bin/run.sh
RUN busybox rm -f /srv/app/f1.txt && ls /srv/app > /srv/app/out/list
CMD ["sh", "/usr/local/bin/run.sh"]
EOF

berth_agent_start "$BENCH_TMP/berth"
bh() { buildah --root "$BENCH_TMP/buildah/root" --runroot "$BENCH_TMP/buildah/run" "$@"; }
mkdir -p "$BENCH_TMP/buildah"
bh pull -q "docker-archive:$BENCH_WORK/busybox.tar" >/dev/null 2>"$BENCH_TMP/buildah/pull.err" || log "buildah pull: $(tail -n 2 "$BENCH_TMP/buildah/pull.err")"
podman_ok=1
podman_setup "$BENCH_TMP/podman" || podman_ok=

# each prints "seconds peakKB" or "FAIL why"
measure() {   # measure WHO cold|cached
    local out nc=''
    [ "$2" = cold ] && nc=--no-cache
    sync
    case $1 in
        berth) out=$(/usr/bin/time -f '%e %M' "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" build -q $nc -t bench:built "$ctx" 2>&1 >/dev/null) ;;
        buildah) out=$(/usr/bin/time -f '%e %M' buildah --root "$BENCH_TMP/buildah/root" --runroot "$BENCH_TMP/buildah/run" \
                bud --runtime runc -q --layers --format docker $nc -t bench:built "$ctx" 2>&1 >/dev/null) ;;
    esac || { echo "FAIL ${out//$'\n'/ }"; return 0; }
    echo "$out" | tail -n 1
}
declare -A t m err
for r in $(seq "$rounds"); do
    for kind in cold cached; do
        for who in berth buildah; do
            k=$who-$kind
            [ -z "${err[$k]:-}" ] || continue
            read -r s kb <<<"$(measure "$who" "$kind")"
            if [ "$s" = FAIL ]; then err[$k]="round $r: $kb"; log "$k: ${err[$k]}"; continue; fi
            t[$k]="${t[$k]:-} $s"; m[$k]="${m[$k]:-} $kb"
            log "round $r $k: $s s, peak RSS $kb kB"
        done
    done
done
[ -z "${err[berth-cold]:-}" ] || die "berth build: ${err[berth-cold]}"
for kind in cold cached; do
    if [ -n "${err[buildah-$kind]:-}" ]; then
        emit what="10-step Dockerfile, $kind: time" chart="build ($kind) time, vs buildah bud" unit=s berth="$(median ${t[berth-$kind]})" peer_name="buildah bud" peer= how="" error="buildah: ${err[buildah-$kind]}"
        continue
    fi
    # shellcheck disable=SC2086
    emit what="10-step Dockerfile, $kind: time" chart="build ($kind) time, vs buildah bud" unit=s berth="$(median ${t[berth-$kind]})" \
        peer_name="buildah bud --layers (runc)" peer="$(median ${t[buildah-$kind]})" \
        how="$rounds rounds; berth $(spread ${t[berth-$kind]}); buildah $(spread ${t[buildah-$kind]})"
    # shellcheck disable=SC2086
    emit what="10-step Dockerfile, $kind: peak RSS" chart="build ($kind) peak RSS, vs buildah bud" unit=MiB \
        berth="$(kb_to_mb "$(median ${m[berth-$kind]})")" peer_name="buildah bud --layers (runc)" peer="$(kb_to_mb "$(median ${m[buildah-$kind]})")" \
        how="GNU time %M of the CLI (berth's RUN steps run in the agent), median of $rounds"
done

# (b) commit of 50 MB of changes.
write50='busybox mkdir -p /big && i=0; while [ $i -lt 50 ]; do busybox dd if=/dev/urandom of=/big/f$i bs=1M count=1 2>/dev/null; i=$((i+1)); done; sleep 600'
ct=() pt=()
for r in $(seq "$rounds"); do
    b run -d --name "c$r" bench:1 sh -c "$write50" >/dev/null
    while [ "$(b diff "c$r" | grep -c '^A /big/f')" -lt 50 ]; do sleep 0.2; done
    sync
    ms=$(time_ms b commit "c$r" "bench:c$r") || die "berth commit: $(last_err)"
    ct+=("$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')")
    b rm -f "c$r" >/dev/null
    if [ -n "$podman_ok" ]; then
        pod run -d --name "c$r" "$PODMAN_IMAGE" sh -c "$write50" >/dev/null
        while [ "$(pod diff "c$r" 2>/dev/null | grep -c '^A /big/f')" -lt 50 ]; do sleep 0.2; done
        sync
        if ms=$(time_ms pod commit -q "c$r" "bench:c$r"); then
            pt+=("$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')")
        else
            podman_ok=; podman_err="podman commit: $(last_err)"
        fi
        pod rm -f -t 0 "c$r" >/dev/null 2>&1 || true
        podman_quiesce all
    fi
done
if [ ${#pt[@]} -gt 0 ]; then
    emit what="commit of a container with 50 MB of changes: time" chart="commit time, vs podman commit" unit=s berth="$(median "${ct[@]}")" \
        peer_name="podman commit (overlay)" peer="$(median "${pt[@]}")" how="$rounds rounds; berth $(spread "${ct[@]}"); podman $(spread "${pt[@]}")"
else
    emit what="commit of a container with 50 MB of changes: time" chart="commit time, vs podman commit" unit=s berth="$(median "${ct[@]}")" \
        peer_name="podman commit (overlay)" peer= how="" error="${podman_err:-podman setup failed}"
fi
