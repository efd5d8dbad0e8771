#!/usr/bin/env bash
# Row 4: binary size on disk. berth: the stripped static musl binaries from scripts/xbuild
# (dist/berth-ARCH; bench/run rebuilds those older than the sources), one file holding the CLI, the
# agent and the runtime. Peers: Debian's x86_64 binaries as installed (dynamically linked: the
# shared libraries they need beyond glibc are counted in `how`, not in the figure). ARM peers are not
# installed here, so the ARM builds are held against the budget in DESIGN.md (2 MB) instead, and
# their rows carry `top`: the ten largest contributors by crate (scripts/size-report).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
cd "$BENCH_REPO"
mib() { awk -v b="$1" 'BEGIN { printf "%.3f", b / 1048576 }'; }
size() { stat -L -c %s "$1"; }
# extra shared libraries (beyond glibc's own) and their total size
libs() {
    local f tot=0 names=()
    for f in "$@"; do
        while read -r l; do
            case $(basename "$l") in libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libresolv.so*) continue ;; esac
            names+=("$(basename "$l")"); tot=$((tot + $(stat -L -c %s "$l")))
        done < <(ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}' | sort -u)
    done
    if [ "${#names[@]}" -eq 0 ]; then echo "no shared libraries beyond glibc"; else
        echo "dynamic: + $(mib "$tot") MiB in $(printf '%s\n' "${names[@]}" | sort -u | wc -l) shared libraries beyond glibc, not counted"; fi
}
state() {   # how the dist binary relates to the sources
    if [ "$(stat -c %Y "$1")" -ge "${BENCH_NEWEST_SRC:-0}" ]; then echo "dist/$(basename "$1") from scripts/xbuild, newer than the sources"
    else echo "dist/$(basename "$1") is OLDER than the sources (stale build)"; fi
}
x86=dist/berth-x86_64
[ -f "$x86" ] || die "$x86 missing: scripts/xbuild x86_64 failed or was not run"
bx=$(mib "$(size "$x86")")
peer() {   # peer NAME FILE...
    local name=$1 t=0 f
    shift
    for f in "$@"; do
        if [ ! -e "$f" ]; then
            emit what="binary size, x86_64" chart="binary size x86_64, vs ${name%% [0-9]*}" unit=MiB berth="$bx" peer_name="$name" peer= how="$(state "$x86")" error="$f not installed"
            return
        fi
        t=$((t + $(size "$f")))
    done
    emit what="binary size, x86_64" chart="binary size x86_64, vs ${name%% [0-9]*}" unit=MiB berth="$bx" peer_name="$name" peer="$(mib "$t")" \
        how="$(state "$x86"), static; peer: $(printf '%s ' "$@")($(libs "$@"))"
}
peer "runc $(runc --version | awk 'NR==1 {print $3}')" /usr/sbin/runc
peer "crun $(crun --version | awk 'NR==1 {print $3}')" /usr/bin/crun
peer "podman $(podman --version | awk '{print $3}') + conmon" /usr/bin/podman /usr/bin/conmon
peer "dockerd + containerd + shim" /usr/sbin/dockerd /usr/bin/containerd /usr/bin/containerd-shim-runc-v2
# top FILE: the ten largest contributors by crate (scripts/size-report on the unstripped copy
# dist/berth-ARCH.syms that scripts/xbuild keeps), one text: "1. ring 301.2 KiB (14.9%); 2. ...".
# Each is also logged, so the run's output shows what each later feature costs.
top() {
    local syms=$1.syms
    [ -f "$syms" ] || { echo "no $syms (scripts/xbuild keeps it): contributors unknown"; return; }
    scripts/size-report "$syms" 10 | awk -F'\t' '$1 == "crate" { printf "%s%d. %s %.1f KiB (%s%%)", (n++ ? "; " : ""), $2, $3, $4 / 1024, $5 }'
}
for arch in aarch64 armhf; do
    f=dist/berth-$arch
    if [ -f "$f" ]; then
        contributors=$(top "$f")
        log "$arch: $(size "$f") bytes; largest by crate: $contributors"
        emit what="binary size, $arch" chart="binary size $arch, vs 2 MB budget" unit=MiB berth="$(mib "$(size "$f")")" peer_name="budget (DESIGN.md)" peer="$(mib 2000000)" \
            how="$(state "$f"), static, $(size "$f") bytes; not a peer: the 2 MB budget (aim 1.5 MiB) for the ARM builds" \
            top="$contributors"
    else
        emit what="binary size, $arch" chart="binary size $arch, vs 2 MB budget" unit=MiB berth= peer_name="budget (DESIGN.md)" peer="$(mib 2000000)" how="" error="$f missing: scripts/xbuild $arch failed or was not run"
    fi
done
