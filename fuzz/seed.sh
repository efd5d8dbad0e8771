#!/usr/bin/env bash
# Fills fuzz/corpus/<target> (git-ignored) with seeds made from the read-only fixture archives in
# shared/fixtures: nothing is copied into the repository.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=${FIXTURES:-$(cd .. && pwd)/../shared/fixtures}
[ -d "$fixtures" ] || fixtures=/work/shared/fixtures
mkdir -p corpus/tar_reader corpus/archive_scan corpus/reference

for f in "$fixtures"/*.tar "$fixtures"/third-party/*.tar "$fixtures"/third-party/*.tar.gz; do
    [ -f "$f" ] || continue
    install -m 0644 "$f" corpus/archive_scan/
    install -m 0644 "$f" corpus/tar_reader/
done

# The layers and small members inside each archive seed tar_reader with other tar shapes (PAX,
# GNU, whiteouts) and archive_scan with compressed layers.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$fixtures"/*.tar; do
    d="$tmp/$(basename "$f")"
    mkdir -p "$d"
    tar -xf "$f" -C "$d" 2>/dev/null || continue
    find "$d" -type f -size -4M | while read -r m; do
        name=$(sha256sum "$m" | cut -c1-16)
        case "$(head -c 262 "$m" | tail -c 5)" in ustar) install -m 0644 "$m" "corpus/tar_reader/layer-$name" ;; esac
        case "$(od -An -tx1 -N2 "$m" | tr -d ' ')" in 1f8b) install -m 0644 "$m" "corpus/archive_scan/blob-$name" ;; esac
    done
done

i=0
for s in busybox busybox:latest docker.io/library/busybox:1.36 index.docker.io/library/busybox \
    localhost:5000/app:v1 localhost/app ghcr.io/o/a:v1.2 me/app_x__y.z-w:2 \
    "busybox@sha256:$(printf 'a%.0s' $(seq 64))" "reg.io:443/a/b:t@sha256:$(printf '0%.0s' $(seq 64))" \
    linux/arm64 linux/arm/v7 linux/amd64; do
    printf '%s' "$s" > "corpus/reference/seed-$i"
    i=$((i + 1))
done
echo "corpus: $(ls corpus/tar_reader | wc -l) tar_reader, $(ls corpus/archive_scan | wc -l) archive_scan, $(ls corpus/reference | wc -l) reference"
