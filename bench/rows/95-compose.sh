#!/usr/bin/env bash
# Row 9.5: applications of several containers (issue 16). `berth compose up -d` of a 5-service
# application (a private network, a named volume, a depends_on chain: db, broker, app, ui, agent)
# against `docker-compose up -d` (Debian's docker-compose, on dockerd) on the same file and images,
# each followed by `down` (not timed); then the engine's memory with the application up: berth's
# agent and its 5 monitors against dockerd + containerd + the 5 containerd shims.
# The berth agent runs in a network namespace this row makes, dockerd in another one of its own
# (its bridges and iptables rules live and die there); the machine's network is not touched.
# The services exit on SIGTERM (a PID 1 `sleep` ignores it, and `down` would time each out).
# BENCH_RUNS (at most 10) rounds, one of each engine per round.
# bench-timeout: 420
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
# `compose` is not in the boards' static build: this row runs the host's release build.
BERTH=$BERTH_FULL
ns=bench-cmp-$$ apid=''
nb() { "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" "$@"; }
dkc() { DOCKER_HOST="unix://$DOCK_EXEC/d.sock" docker-compose "$@"; }
app=$BENCH_TMP/app
cleanup() {
    set +e   # every step runs, whatever failed before it
    if [ -n "$apid" ]; then
        nb compose -f "$app/compose.yaml" -p bench down -v >/dev/null 2>&1
        kill "$apid" 2>/dev/null
        wait "$apid" 2>/dev/null
    fi
    [ -z "$DOCK_PID" ] || dkc -f "$app/compose.yaml" -p bench down -v >/dev/null 2>&1
    dockerd_stop
    [ ! -e "/run/netns/$ns" ] || ip netns del "$ns" || log "cannot delete network namespace $ns"
}
trap cleanup EXIT

mkdir -p "$app" "$BENCH_TMP/b" "$BENCH_TMP/docker"
cat >"$app/compose.yaml" <<'YAML'
services:
  db:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes: ["data:/data"]
    networks: [back]
  broker:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    depends_on: [db]
    networks: [back]
  app:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    depends_on: [db, broker]
    networks: [back]
    mem_limit: 64m
  ui:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    depends_on: [app]
    networks: [back]
    ports: ["8080:80"]
  agent:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    depends_on: [app]
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
YAML

ip netns add "$ns"
ip -n "$ns" link set lo up
nb load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
nsenter --net="/run/netns/$ns" -- "$BERTH" --root "$BENCH_TMP/b/root" -H "unix://$BENCH_TMP/b/agent.sock" agent \
    </dev/null >>"$BENCH_TMP/b/agent.log" 2>&1 &
apid=$!
for _ in $(seq 100); do nb ps -q >/dev/null 2>&1 && break; sleep 0.1; done
nb ps -q >/dev/null 2>&1 || die "berth agent did not start: $(tail -n 2 "$BENCH_TMP/b/agent.log")"

docker_ok='' docker_err=''
if ! command -v docker-compose >/dev/null; then
    docker_err="docker-compose is not installed (apt-get install docker-compose)"
else
    dockerd_start "bench-cmp-dock-$$"
    if [ -n "$DOCKER_ERR" ]; then docker_err=$DOCKER_ERR; else docker_ok=1; fi
fi
[ -n "$docker_ok" ] || log "$docker_err"

up() {
    case "$1" in
        berth) nb compose -f "$app/compose.yaml" -p bench up -d ;;
        docker) dkc -f "$app/compose.yaml" -p bench up -d ;;
    esac
}
down() {
    case "$1" in
        berth) nb compose -f "$app/compose.yaml" -p bench down -v ;;
        docker) dkc -f "$app/compose.yaml" -p bench down -v ;;
    esac
}
running() {  # running ENGINE: how many of the project's containers run
    case "$1" in
        berth) nb ps -q --filter label=com.docker.compose.project=bench | wc -l ;;
        docker) dk ps -q --filter label=com.docker.compose.project=bench | wc -l ;;
    esac
}
declare -A t err
runs=$(( BENCH_RUNS < 10 ? BENCH_RUNS : 10 ))
for i in $(seq "$runs"); do
    for n in berth docker; do
        [ -z "${err[$n]:-}" ] || continue
        if [ "$n" = docker ] && [ -z "$docker_ok" ]; then err[$n]=$docker_err; continue; fi
        if ms=$(time_ms up "$n") && [ "$(running "$n")" = 5 ]; then
            t[$n]="${t[$n]:-} $ms"
        else
            err[$n]="up $i: $(running "$n") of 5 running: $(last_err)"
            log "$n: ${err[$n]}"
            [ "$n" = docker ] || die "berth compose up failed: ${err[$n]}"
        fi
        down "$n" >/dev/null 2>&1 || { err[$n]="down $i failed"; [ "$n" = docker ] || die "berth compose down failed"; }
    done
done
# shellcheck disable=SC2086
bs=$(spread ${t[berth]})
if [ -n "${err[docker]:-}" ] || [ -z "${t[docker]:-}" ]; then
    # shellcheck disable=SC2086
    emit what="compose up -d of a 5-service application (network, volume, depends_on chain)" chart="compose up, 5 services, vs docker-compose" \
        unit=ms berth="$(median ${t[berth]})" peer_name="docker-compose up -d" peer= how="$runs runs; berth $bs" \
        error="docker-compose could not run: ${err[docker]:-no runs}"
else
    # shellcheck disable=SC2086
    emit what="compose up -d of a 5-service application (network, volume, depends_on chain)" chart="compose up, 5 services, vs docker-compose" \
        unit=ms berth="$(median ${t[berth]})" \
        peer_name="docker-compose $(docker-compose version --short 2>/dev/null) up -d on dockerd $(dockerd --version | sed 's/^Docker version \([^,+]*\).*/\1/')" \
        peer="$(median ${t[docker]})" how="$runs interleaved rounds (up -d timed, down -v not); berth $bs; docker $(spread ${t[docker]})"
fi

# Memory with the application up, after 1.5 s idle.
up berth >/dev/null 2>&1 || die "berth compose up failed: $(tail -n 2 "$BENCH_TMP/b/agent.log")"
sleep 1.5
# shellcheck disable=SC2046
bmem=$(pss "$apid" $(pgrep -P "$apid" || true)); bagent=$(pss "$apid")
dmem='' mem_err=$docker_err
if [ -n "$docker_ok" ]; then
    if up docker >/dev/null 2>"$BENCH_TMP/docker/up.err"; then
        sleep 1.5
        shims() { pids_matching "$DOCK_EXEC/x" | while read -r p; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd-shim ] && echo "$p"; done; return 0; }
        # shellcheck disable=SC2046
        dmem=$(pss "$DOCK_PID" $(pgrep -P "$DOCK_PID" || true) $(shims))
    else
        mem_err="docker-compose up: $(tail -n 2 "$BENCH_TMP/docker/up.err" | tr '\n' ' ' | cut -c1-300)"
    fi
fi
emit what="memory with a 5-service application up: engine + per-container processes" chart="memory, 5-service app, vs docker" unit=MiB \
    berth="$(kb_to_mb "$bmem")" peer_name="dockerd + containerd + 5 shims" peer="$( [ -n "$dmem" ] && kb_to_mb "$dmem")" \
    how="PSS after 1.5 s idle; berth: agent (PSS $(kb_to_mb "$bagent") MiB) + 5 monitors; docker: dockerd, containerd, containerd-shim-runc-v2" \
    ${mem_err:+error="$mem_err"}
