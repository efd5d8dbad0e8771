#!/usr/bin/env bash
# Row 3: memory of the engine while idle with 0, 10 and 50 running containers (`sleep`), as PSS
# (proportional set size, /proc/PID/smaps_rollup: shared pages counted once over the processes
# sharing them). berth: the agent plus its per-container monitors (container processes excluded).
# podman has no daemon: its cost is one conmon per container. Docker: dockerd + containerd, plus one
# containerd-shim-runc-v2 per container, when a Docker engine can be started here.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
dock_dir='' dock_exec='' dock_pid=''
cleanup() {
    berth_agent_stop
    podman_teardown
    if [ -n "$dock_pid" ]; then
        dk ps -aq 2>/dev/null | xargs -r /usr/bin/docker -H "unix://$dock_exec/d.sock" rm -f >/dev/null 2>&1 || true
        kill "$dock_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$dock_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$dock_pid" 2>/dev/null || true
        wait "$dock_pid" 2>/dev/null || true
    fi
    [ -z "$dock_exec" ] || { unmount_under "$dock_exec"; rm -rf "$dock_exec"; }
    [ -z "$dock_dir" ] || unmount_under "$dock_dir"
}
trap cleanup EXIT
settle() { sleep 1.5; }

# --- berth
berth_agent_start "$BENCH_TMP/berth"
# shellcheck disable=SC2046
berth_total() { pss "$AGENT_PID" $(pgrep -P "$AGENT_PID" || true); }
settle
b0=$(berth_total); b0rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
for i in $(seq 10); do b run -d --net none --name "m$i" bench:1 sleep 3600 >/dev/null; done
settle
b10=$(berth_total)
for i in $(seq 11 50); do b run -d --net none --name "m$i" bench:1 sleep 3600 >/dev/null; done
settle
b50=$(berth_total); mon50=$(pgrep -P "$AGENT_PID" | wc -l)
log "berth: 0: $b0 kB, 10: $b10 kB, 50: $b50 kB ($mon50 monitors)"
# re-adoption (from the former bench/supervise.sh): agent killed with -9, restarted, time until it
# serves again with the 50 containers re-adopted
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
s=$EPOCHREALTIME
"$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" agent --default-network host </dev/null >>"$BERTH_DIR/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 2000); do b events --until 0s >/dev/null 2>&1 && break; sleep 0.005; done
readopt=$(awk -v s="$s" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (e - s) * 1000 }')
readopted=$(b ps -q | wc -l)
log "berth agent restart after kill -9: serving in $readopt ms with $readopted containers"
berth_agent_stop

# --- podman
p_err='' p10='' p50=''
conmons() { pids_matching "$PODMAN_RUN" | while read -r p; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = conmon ] && echo "$p"; done; return 0; }
if podman_setup "$BENCH_TMP/podman"; then
    pstart() { pod run -d --pull never --network none --name "m$1" "$PODMAN_IMAGE" sleep 3600 >/dev/null 2>>"$BENCH_TMP/podman.err"; }
    if for i in $(seq 10); do pstart "$i" || exit 1; done; then
        settle
        # shellcheck disable=SC2046
        p10=$(pss $(conmons)); n10=$(conmons | wc -l)
        # the next 40 in parallel (8 at a time), to save time
        if seq 11 50 | xargs -P 8 -I{} bash -c "$(declare -f pod pstart); PODMAN_DIR='$PODMAN_DIR' PODMAN_RUN='$PODMAN_RUN' BENCH_WORK='$BENCH_WORK' BENCH_TMP='$BENCH_TMP' PODMAN_IMAGE='$PODMAN_IMAGE' pstart {}"; then
            settle
            # shellcheck disable=SC2046
            p50=$(pss $(conmons)); n50=$(conmons | wc -l)
        else
            p_err="podman run (containers 11-50): $(tail -n 1 "$BENCH_TMP/podman.err")"
        fi
        log "podman: conmons 10: $p10 kB ($n10), 50: ${p50:-?} kB (${n50:-?})"
    else
        p_err="podman run: $(tail -n 2 "$BENCH_TMP/podman.err" | tr '\n' ' ')"
    fi
    podman_teardown
else
    p_err="podman load: $(tail -n 2 "$BENCH_TMP/podman/load.err" | tr '\n' ' ')"
fi

# --- docker
d_err='' d0='' d10=''
dk() { DOCKER_HOST="unix://$dock_exec/d.sock" /usr/bin/docker "$@"; }
if command -v dockerd >/dev/null; then
    dock_dir=$BENCH_TMP/docker
    dock_exec=$(mktemp -d /tmp/bench-docker.XXXXXX)
    mkdir -p "$dock_dir"
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 --data-root "$dock_dir/data" \
        --exec-root "$dock_exec/x" --pidfile "$dock_exec/d.pid" -H "unix://$dock_exec/d.sock" \
        </dev/null >"$dock_dir/dockerd.log" 2>&1 &
    dock_pid=$!
    for _ in $(seq 150); do dk version >/dev/null 2>&1 && break; kill -0 "$dock_pid" 2>/dev/null || break; sleep 0.2; done
    if ! dk version >/dev/null 2>&1; then
        d_err="dockerd did not start: $(grep -iE 'error|fail' "$dock_dir/dockerd.log" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
    elif ! dk load -q -i "$BENCH_WORK/busybox.tar" >/dev/null 2>"$dock_dir/load.err"; then
        d_err="docker load: $(tail -n 2 "$dock_dir/load.err" | tr '\n' ' ')"
    else
        dockers() { echo "$dock_pid"; pgrep -P "$dock_pid" || true; }   # dockerd and the containerd it started
        shims() { pids_matching "$dock_exec/x" | while read -r p; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd-shim ] && echo "$p"; done; return 0; }
        settle
        # shellcheck disable=SC2046
        d0=$(pss $(dockers))
        for i in $(seq 10); do
            dk run -d --network none --name "m$i" bench:1 sleep 3600 >/dev/null 2>>"$dock_dir/run.err" \
                || { d_err="docker run: $(tail -n 2 "$dock_dir/run.err" | tr '\n' ' ' | cut -c1-300)"; break; }
        done
        if [ -z "$d_err" ]; then
            settle
            # shellcheck disable=SC2046
            d10=$(pss $(dockers) $(shims)); ns=$(shims | wc -l)
            log "docker: 0: $d0 kB, 10: $d10 kB ($ns shims)"
        fi
    fi
else
    d_err="dockerd is not installed (apt-get install docker.io)"
fi

mb() { kb_to_mb "$1"; }
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.3f", (b - a) / n / 1024 }'; }
how_b="PSS after 1.5 s idle; berth: agent (VmRSS $(mb "$b0rss") MiB) + its monitors"
emit what="idle engine, 0 containers" chart="memory, idle engine, vs dockerd+containerd" unit=MiB berth="$(mb "$b0")" peer_name="dockerd + containerd" \
    peer="$( [ -n "$d0" ] && mb "$d0")" how="$how_b; podman has no daemon (0)" ${d_err:+error="docker: $d_err"}
emit what="10 running containers: engine + per-container processes" chart="memory, 10 containers, vs podman" unit=MiB berth="$(mb "$b10")" \
    peer_name="podman: 10 conmon" peer="$( [ -n "$p10" ] && mb "$p10")" how="$how_b; podman: conmon processes" \
    ${p_err:+error="podman: $p_err"}
emit what="10 running containers: engine + per-container processes" chart="memory, 10 containers, vs docker" unit=MiB berth="$(mb "$b10")" \
    peer_name="dockerd + containerd + 10 shims" peer="$( [ -n "$d10" ] && mb "$d10")" how="$how_b; docker: dockerd, containerd, containerd-shim-runc-v2" \
    ${d_err:+error="docker: $d_err"}
emit what="50 running containers: engine + per-container processes" chart="memory, 50 containers, vs podman" unit=MiB berth="$(mb "$b50")" \
    peer_name="podman: 50 conmon" peer="$( [ -n "$p50" ] && mb "$p50")" how="$how_b ($mon50 monitors); podman: conmon processes; berth agent killed with -9 then restarted: serving again after $readopt ms with $readopted/50 re-adopted" \
    ${p_err:+error="podman: $p_err"}
emit what="memory added per running container" chart="memory per container, vs podman conmon" unit=MiB berth="$(per "$b0" "$b50" 50)" \
    peer_name="podman: conmon" peer="$( [ -n "$p50" ] && per 0 "$p50" 50)" how="berth: (PSS with 50 - PSS with 0) / 50; podman: conmon PSS / 50" \
    ${p_err:+error="podman: $p_err"}
emit what="memory added per running container" chart="memory per container, vs docker shim" unit=MiB berth="$(per "$b0" "$b50" 50)" \
    peer_name="docker: containerd-shim + dockerd/containerd growth" peer="$( [ -n "$d10" ] && per "$d0" "$d10" 10)" \
    how="berth: (PSS with 50 - PSS with 0) / 50; docker: (PSS with 10 - PSS with 0) / 10" ${d_err:+error="docker: $d_err"}
