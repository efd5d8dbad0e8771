#!/usr/bin/env bash
# Row 8: what the seccomp filter costs. Start-to-exit of `true` in the busybox image with berth's
# default profile (Docker's, compiled to BPF at every start) against the same without a filter
# (`--security-opt seccomp=unconfined`), and against `crun run` of the same rootfs with Docker's
# default profile in its config.json (crun compiles it with libseccomp), interleaved, all inside
# the same `unshare -m` wrapper (crun needs it on this hybrid host; see 10-start.sh).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
cleanup() { berth_agent_stop; }
trap cleanup EXIT

berth_agent_start "$BENCH_TMP/berth"
bundle "$BENCH_TMP/plain" true
mkdir -p "$BENCH_TMP/filtered"
# Docker's default profile as an OCI linux.seccomp for Docker's default capabilities on amd64:
# includes/excludes resolved as Docker's daemon resolves them before handing it to the runtime.
"$PY" - "$BENCH_REPO/runtime/src/seccomp/default.json" "$BENCH_TMP/plain/config.json" "$BENCH_TMP/filtered/config.json" <<'PY'
import json, platform, sys
prof = json.load(open(sys.argv[1]))
c = json.load(open(sys.argv[2]))
caps = set(c["process"]["capabilities"]["bounding"])
goarch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "arm")
arches = []
for m in prof.get("archMap") or []:
    if m["architecture"] == {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}.get(goarch):
        arches = [m["architecture"]] + (m.get("subArchitectures") or [])
out = []
for s in prof["syscalls"]:
    inc, exc = s.get("includes") or {}, s.get("excludes") or {}
    if any(x not in caps for x in inc.get("caps") or []) or (inc.get("arches") and goarch not in inc["arches"]):
        continue
    if any(x in caps for x in exc.get("caps") or []) or goarch in (exc.get("arches") or []):
        continue
    r = {"names": s["names"], "action": s["action"]}
    for k in ("errnoRet", "args"):
        if k in s:
            r[k] = s[k]
    out.append(r)
c.setdefault("linux", {})["seccomp"] = {"defaultAction": prof["defaultAction"], "defaultErrnoRet": prof["defaultErrnoRet"],
                                         "architectures": arches, "syscalls": out}
json.dump(c, open(sys.argv[3], "w"), indent=1)
PY

declare -A t err
names=(berth unconfined crun crun_plain)
run_one() {
    case "$1" in
        berth) in_wrapper "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" run --rm --net none bench:1 true ;;
        unconfined) in_wrapper "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" run --rm --net none \
            --security-opt seccomp=unconfined bench:1 true ;;
        crun) in_wrapper crun run -b "$BENCH_TMP/filtered" "bench-sc-$$-$i" ;;
        crun_plain) in_wrapper crun run -b "$BENCH_TMP/plain" "bench-scp-$$-$i" ;;
    esac
}
for i in $(seq "$BENCH_RUNS"); do
    for n in "${names[@]}"; do
        [ -z "${err[$n]:-}" ] || continue
        if ms=$(time_ms run_one "$n"); then
            t[$n]="${t[$n]:-} $ms"
        else
            err[$n]="run $i failed: $(last_err)"
            log "$n: ${err[$n]}"
            case $n in berth|unconfined) die "berth run failed: ${err[$n]}" ;; esac
        fi
    done
done
# shellcheck disable=SC2086
bm=$(median ${t[berth]})
# shellcheck disable=SC2086
emit what="start-to-exit of true with the default seccomp profile, vs without (berth)" chart="run true: seccomp on vs off" unit=ms \
    berth="$bm" peer_name="berth run --security-opt seccomp=unconfined" peer="$(median ${t[unconfined]})" \
    how="$BENCH_RUNS interleaved runs each in the same unshare -m wrapper; with $(spread ${t[berth]}); without $(spread ${t[unconfined]})"
if [ -n "${err[crun]:-}" ] || [ -z "${t[crun]:-}" ]; then
    emit what="start-to-exit of true with Docker's default seccomp profile, vs crun" chart="run true with seccomp, vs crun" unit=ms \
        berth="$bm" peer_name="crun run (OCI bundle, Docker's profile)" peer= how="$BENCH_RUNS runs" error="crun could not run: ${err[crun]:-no runs}"
else
    # shellcheck disable=SC2086
    emit what="start-to-exit of true with Docker's default seccomp profile, vs crun" chart="run true with seccomp, vs crun" unit=ms \
        berth="$bm" peer_name="crun run (OCI bundle, Docker's profile via libseccomp)" peer="$(median ${t[crun]})" \
        how="$BENCH_RUNS interleaved runs each; crun $(spread ${t[crun]}); crun without a profile: $( [ -n "${t[crun_plain]:-}" ] && median ${t[crun_plain]}) ms median"
fi
