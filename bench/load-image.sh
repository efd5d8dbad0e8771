#!/usr/bin/env bash
# Image load vs the physical limit: `berth load` of a generated 200 MB, 5-layer docker-save
# tarball against `sha256sum` + `tar -x` of the same file on the same disk, interleaved runs,
# medians and peak RSS. Usage: bench/load-image.sh [RUNS] (default 7). Needs python3.
set -euo pipefail
runs=${1:-7}
here=$(cd "$(dirname "$0")/.." && pwd)
berth=${BERTH_BIN:-$here/target/release/berth}
[ -x "$berth" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=${BENCH_DIR:-/var/tmp/berth-bench}
mkdir -p "$work"
tarball=$work/big200.tar
if [ ! -f "$tarball" ]; then
  python3 - "$tarball" <<'PY'
import tarfile, io, json, hashlib, os, random, sys
random.seed(7)
layers, diffs = [], []
for i in range(5):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w') as t:
        total = n = 0
        while total < 40_000_000:
            size = random.choice([200, 4_000, 60_000, 700_000, 3_000_000])
            ti = tarfile.TarInfo(f'l{i}/d{n % 50}/f{n}'); ti.size = size
            t.addfile(ti, io.BytesIO(os.urandom(size))); total += size; n += 1
    lay = b.getvalue(); layers.append(lay); diffs.append('sha256:' + hashlib.sha256(lay).hexdigest())
cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'rootfs': {'type': 'layers', 'diff_ids': diffs}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
with tarfile.open(sys.argv[1], 'w') as t:
    def add(n, d):
        ti = tarfile.TarInfo(n); ti.size = len(d); t.addfile(ti, io.BytesIO(d))
    names = []
    for i, l in enumerate(layers):
        names.append(f'{diffs[i][7:]}/layer.tar'); add(names[-1], l)
    add(ch + '.json', cfg)
    add('manifest.json', json.dumps([{'Config': ch + '.json', 'RepoTags': ['big:200'], 'Layers': names}]).encode())
PY
fi
bt=(); pt=(); br=(); pr=()
for i in $(seq "$runs"); do
  rm -rf "$work/root" "$work/x"; mkdir "$work/x"; sync
  out=$( { /usr/bin/time -f "%e %M" "$berth" --root "$work/root" load -q -i "$tarball"; } 2>&1 | tail -1)
  bt+=("${out% *}"); br+=("${out#* }")
  sync
  out=$( { /usr/bin/time -f "%e %M" sh -c "sha256sum '$tarball' >/dev/null && tar -xf '$tarball' -C '$work/x'"; } 2>&1 | tail -1)
  pt+=("${out% *}"); pr+=("${out#* }")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(median "${bt[@]}"); mp=$(median "${pt[@]}")
echo "image load, $(du -m "$tarball" | cut -f1) MB, 5 layers, $runs interleaved runs (median):"
echo "  berth load           ${mb}s  (runs: ${bt[*]})  peak RSS $(median "${br[@]}") KB"
echo "  sha256sum + tar -x   ${mp}s  (runs: ${pt[*]})  peak RSS $(median "${pr[@]}") KB"
awk -v a="$mb" -v b="$mp" 'BEGIN {printf "  ratio berth/limit   %.2f\n", a / b}'
rm -rf "$work/root" "$work/x"
