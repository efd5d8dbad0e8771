#!/usr/bin/env bash
# Row 8: pull of a generated 200 MB, 5-layer image (40 MB of random files per layer) from Debian's
# docker-registry on loopback, filled by `skopeo copy` (gzip layers): `berth pull` vs `podman
# pull` (wall time and peak RSS, GNU time %M; 5 interleaved rounds, --quick 2, each into empty
# storage after a sync; berth fsyncs, podman does not). Docker's `docker pull` is not on the
# bench machine (no dockerd): not measured. Then a resume: `berth pull` through a relay (Python,
# inline) that cuts every blob answer after 8 MB; bytes relayed minus the blobs' size = bytes
# fetched twice (HTTP heads included).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
# `pull` is not in the boards' static build: this row runs the host's release build.
BERTH=$BERTH_FULL
rounds=$([ -n "$BENCH_QUICK" ] && echo 2 || echo 5)
PODMAN_RUN='' rpid='' xpid=''
cleanup() {
    [ -z "$rpid" ] || { kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; }
    [ -z "$xpid" ] || { kill "$xpid" 2>/dev/null || true; wait "$xpid" 2>/dev/null || true; }
    [ -z "$PODMAN_RUN" ] || { unmount_under "$BENCH_TMP"; unmount_under "$PODMAN_RUN"; rm -rf "$PODMAN_RUN"; }
}
trap cleanup EXIT
command -v docker-registry >/dev/null || die "docker-registry not installed (apt-get install docker-registry)"
tarball=$BENCH_TMP/big200.tar
log "generating $tarball"
"$PY" - "$tarball" <<'PY'
import hashlib, io, json, os, random, sys, tarfile
random.seed(8)
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
    layers.append(b.getvalue())
    diffs.append("sha256:" + hashlib.sha256(layers[-1]).hexdigest())
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
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$BENCH_TMP/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $BENCH_TMP/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$BENCH_TMP/registry.yml" >"$BENCH_TMP/registry.log" 2>&1 &
rpid=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "docker-archive:$tarball" "docker://127.0.0.1:$port/big:200" || die "skopeo copy failed"
ref=127.0.0.1:$port/big:200
PODMAN_RUN=$(mktemp -d /tmp/bench-podman.XXXXXX)
measure() {   # measure NAME: prints "seconds peakKB"
    local out
    rm -rf "$BENCH_TMP/s"
    mkdir -p "$BENCH_TMP/s"
    sync
    case $1 in
        berth) out=$(/usr/bin/time -f '%e %M' "$BERTH" --root "$BENCH_TMP/s/root" pull -q "$ref" 2>&1 >/dev/null) ;;
        podman) out=$(CONTAINERS_CONF=$BENCH_WORK/containers.conf /usr/bin/time -f '%e %M' podman --root "$BENCH_TMP/s/root" \
                --runroot "$PODMAN_RUN" --tmpdir "$BENCH_TMP/s" --storage-driver overlay --cgroup-manager cgroupfs \
                --events-backend file pull -q --tls-verify=false "$ref" 2>&1 >/dev/null) ;;
    esac || { echo "FAIL ${out//$'\n'/ }"; return 0; }
    echo "$out" | tail -n 1
    unmount_under "$BENCH_TMP/s"
}
declare -A t m err
for r in $(seq "$rounds"); do
    for n in berth podman; do
        [ -z "${err[$n]:-}" ] || continue
        read -r s k <<<"$(measure "$n")"
        if [ "$s" = FAIL ]; then err[$n]="round $r: $k"; log "$n: ${err[$n]}"; continue; fi
        t[$n]="${t[$n]:-} $s"; m[$n]="${m[$n]:-} $k"
        log "round $r $n: $s s, peak RSS $k kB"
    done
done
[ -z "${err[berth]:-}" ] || die "berth pull: ${err[berth]}"
# shellcheck disable=SC2086
bt=$(median ${t[berth]}) bm=$(kb_to_mb "$(median ${m[berth]})")
if [ -n "${err[podman]:-}" ]; then
    emit what="pull a 200 MB 5-layer image from a loopback registry: time" chart="image pull time, vs podman" unit=s berth="$bt" peer_name="podman pull" peer= how="" error="podman: ${err[podman]}"
else
    # shellcheck disable=SC2086
    emit what="pull a 200 MB 5-layer image from a loopback registry: time" chart="image pull time, vs podman" unit=s berth="$bt" peer_name="podman pull (overlay)" \
        peer="$(median ${t[podman]})" how="$rounds interleaved rounds, wall time; berth $(spread ${t[berth]}); podman $(spread ${t[podman]}); berth fsyncs, podman does not"
    # shellcheck disable=SC2086
    emit what="pull a 200 MB 5-layer image from a loopback registry: peak RSS" chart="image pull peak RSS, vs podman" unit=MiB berth="$bm" peer_name="podman pull (overlay)" \
        peer="$(kb_to_mb "$(median ${m[podman]})")" how="GNU time %M, median of $rounds; berth kB $(spread ${m[berth]}); podman kB $(spread ${m[podman]})"
fi

# Resume: a relay that cuts every blob answer after 8 MB; bytes relayed minus the layers' size.
rport=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" - "$rport" "$port" "$BENCH_TMP/relayed" <<'PY' &
import socket, sys, threading
lport, up, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
total = 0
lock = threading.Lock()
def serve(c):
    global total
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(4096)
        if not d or (not head and d.startswith(b"\x16")):
            # EOF, or a TLS ClientHello (berth tries HTTPS first on loopback): plain HTTP only.
            return c.close()
        head += d
    cut = 8_000_000 if b"/blobs/sha256:" in head.split(b"\r\n")[0] else 1 << 62
    u = socket.create_connection(("127.0.0.1", up))
    u.sendall(head)
    sent = 0
    while sent < cut:
        d = u.recv(65536)
        if not d:
            break
        d = d[: cut - sent]
        c.sendall(d)
        sent += len(d)
    with lock:
        total += sent
        open(out, "w").write(str(total))
    u.close()
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", lport))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
xpid=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.1; done
rm -rf "$BENCH_TMP/s"
"$BERTH" --root "$BENCH_TMP/s/root" pull -q "127.0.0.1:$rport/big:200" >/dev/null 2>"$BENCH_TMP/resume.err" || die "berth pull through the cutting relay: $(tail -n 2 "$BENCH_TMP/resume.err")"
layers=$(curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://127.0.0.1:$port/v2/big/manifests/200" |
    "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])')
relayed=$(cat "$BENCH_TMP/relayed")
twice=$(( relayed - layers ))
emit what="pull resumed after cuts every 8 MB: bytes fetched twice" chart="pull resume: bytes fetched twice" unit=bytes berth="$twice" peer_name="" peer= \
    how="relayed $relayed bytes (with HTTP heads) for $layers bytes of blobs; each cut resumed with Range"
unmount_under "$BENCH_TMP/s"
