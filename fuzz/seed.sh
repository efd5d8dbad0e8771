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
# DNS queries: A for a member, AAAA with an EDNS record, a PTR, a compressed name, a pointer loop.
mkdir -p corpus/dns
printf '\x12\x34\x01\x00\x00\x01\0\0\0\0\0\0\x03web\0\0\x01\0\x01' > corpus/dns/a-web
printf '\x00\x07\x01\x00\x00\x01\0\0\0\0\0\x01\x04many\0\0\x1c\0\x01\0\0\x29\x10\0\0\0\0\0\0\0' > corpus/dns/aaaa-edns
printf '\x00\x08\x01\x00\x00\x01\0\0\0\0\0\0\x012\x010\x0218\x03172\x07in-addr\x04arpa\0\0\x0c\0\x01' > corpus/dns/ptr
printf '\x00\x09\x01\x00\x00\x01\0\0\0\0\0\0\x03www\x07example\x03org\0\0\x01\0\x01' > corpus/dns/forward
printf '\x00\x0a\x01\x00\x00\x01\0\0\0\0\0\0\xc0\x0c\0\x01\0\x01' > corpus/dns/loop
echo "corpus: $(ls corpus/tar_reader | wc -l) tar_reader, $(ls corpus/archive_scan | wc -l) archive_scan, $(ls corpus/reference | wc -l) reference, $(ls corpus/dns | wc -l) dns"
