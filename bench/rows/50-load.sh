#!/usr/bin/env bash
# Row 5: image load of a generated 200 MB, 5-layer `docker save` tarball (40 MB of random files of
# mixed sizes per layer): `berth load` vs `podman load` vs `sha256sum` + `tar -x` of the same
# tarball on the same disk (the physical limit: read it, hash it, write its bytes). Wall time and
# peak RSS (GNU time %M) of each; 5 interleaved rounds (--quick 2), each into empty storage after a
# sync. berth fsyncs every blob and layer; the other two do not sync.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
rounds=$([ -n "$BENCH_QUICK" ] && echo 2 || echo 5)
PODMAN_DIR='' PODMAN_RUN=''
cleanup() { [ -z "$PODMAN_RUN" ] || { unmount_under "$BENCH_TMP"; unmount_under "$PODMAN_RUN"; rm -rf "$PODMAN_RUN"; }; }
trap cleanup EXIT
tarball=$BENCH_TMP/big200.tar
log "generating $tarball"
"$PY" - "$tarball" <<'PY'
import hashlib, io, json, os, random, sys, tarfile
random.seed(7)
layers, diffs = [], []
for i in range(5):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        total = n = 0
        while total < 40_000_000:
            size = random.choice([200, 4_000, 60_000, 700_000, 3_000_000])
            ti = tarfile.TarInfo(f"l{i}/d{n % 50}/f{n}")
            ti.size = size
            t.addfile(ti, io.BytesIO(os.urandom(size)))
            total += size
            n += 1
    lay = b.getvalue()
    layers.append(lay)
    diffs.append("sha256:" + hashlib.sha256(lay).hexdigest())
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
with tarfile.open(sys.argv[1], "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    names = []
    for i, lay in enumerate(layers):
        names.append(f"{diffs[i][7:]}/layer.tar")
        add(names[-1], lay)
    add(ch + ".json", cfg)
    add("manifest.json", json.dumps([{"Config": ch + ".json", "RepoTags": ["big:200"], "Layers": names}]).encode())
PY
mb=$(( $(stat -c %s "$tarball") / 1000000 ))
PODMAN_RUN=$(mktemp -d /tmp/bench-podman.XXXXXX)
# each: prints "seconds peakKB"
measure() {   # measure NAME ROUND
    local out
    rm -rf "$BENCH_TMP/s"
    mkdir -p "$BENCH_TMP/s"
    sync
    # shellcheck disable=SC2016
    case $1 in
        berth) out=$(/usr/bin/time -f '%e %M' "$BERTH" --root "$BENCH_TMP/s/root" load -q -i "$tarball" 2>&1 >/dev/null) ;;
        podman) out=$(CONTAINERS_CONF=$BENCH_WORK/containers.conf /usr/bin/time -f '%e %M' podman --root "$BENCH_TMP/s/root" \
                --runroot "$PODMAN_RUN" --tmpdir "$BENCH_TMP/s" --storage-driver overlay --cgroup-manager cgroupfs \
                --events-backend file load -q -i "$tarball" 2>&1 >/dev/null) ;;
        limit) out=$(/usr/bin/time -f '%e %M' sh -c 'sha256sum "$1" >/dev/null && tar -xf "$1" -C "$2"' sh "$tarball" "$BENCH_TMP/s" 2>&1) ;;
    esac || { echo "FAIL ${out//$'\n'/ }"; return 0; }
    echo "$out" | tail -n 1
    unmount_under "$BENCH_TMP/s"
}
declare -A t m err
for r in $(seq "$rounds"); do
    for n in berth podman limit; do
        [ -z "${err[$n]:-}" ] || continue
        read -r s k <<<"$(measure "$n")"
        if [ "$s" = FAIL ]; then err[$n]="round $r: $k"; log "$n: ${err[$n]}"; continue; fi
        t[$n]="${t[$n]:-} $s"; m[$n]="${m[$n]:-} $k"
        log "round $r $n: $s s, peak RSS $k kB"
    done
done
rm -rf "$BENCH_TMP/s"
[ -z "${err[berth]:-}" ] || die "berth load: ${err[berth]}"
# shellcheck disable=SC2086
bt=$(median ${t[berth]}) bm=$(kb_to_mb "$(median ${m[berth]})")
for p in limit podman; do
    case $p in
        limit) pn="sha256sum + tar -x" pl="sha256sum+tar" ;;
        podman) pn="podman load (overlay)" pl=podman ;;
    esac
    if [ -n "${err[$p]:-}" ]; then
        emit what="load a $mb MB 5-layer image: time" chart="image load time, vs $pl" unit=s berth="$bt" peer_name="$pn" peer= how="" error="$p: ${err[$p]}"
        emit what="load a $mb MB 5-layer image: peak RSS" chart="image load peak RSS, vs $pl" unit=MiB berth="$bm" peer_name="$pn" peer= how="" error="$p: ${err[$p]}"
        continue
    fi
    # shellcheck disable=SC2086
    emit what="load a $mb MB 5-layer image: time" chart="image load time, vs $pl" unit=s berth="$bt" peer_name="$pn" peer="$(median ${t[$p]})" \
        how="$rounds interleaved rounds, wall time; berth $(spread ${t[berth]}); $pl $(spread ${t[$p]}); berth fsyncs, the peer does not"
    # shellcheck disable=SC2086
    emit what="load a $mb MB 5-layer image: peak RSS" chart="image load peak RSS, vs $pl" unit=MiB berth="$bm" peer_name="$pn" peer="$(kb_to_mb "$(median ${m[$p]})")" \
        how="GNU time %M, median of $rounds; berth kB $(spread ${m[berth]}); $pl kB $(spread ${m[$p]})"
done
