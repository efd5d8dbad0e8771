#!/usr/bin/env bash
# Row 9.6: an application update (issue 16): how long a two-service application is down while it
# moves to a new revision. The application: a server with a health check (every 500 ms) and a
# client that waits for it to be healthy and has one too. Each round flips the revision (an
# environment variable changes, so every service is re-created). berth: `berth fleet push --app`
# over mosquitto on loopback to an agent (the images are on the device: no tarball); Docker:
# `docker-compose up -d` of the same file on dockerd. Measured the same way for both, from the
# engine's own events: from the first `die` of an old container to the last `health_status:
# healthy` of a new one (the application's downtime, old revision stopped to new revision healthy).
# The services use the host network (the agent's; dockerd's is a network namespace this row makes,
# so its bridge and iptables rules stay there). BENCH_RUNS rounds (at most 6), interleaved.
# bench-timeout: 420
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$BENCH_LIB"
MOSQ='' AGENT=''
nb() { "$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" "$@"; }
dkc() { DOCKER_HOST="unix://$DOCK_EXEC/d.sock" docker-compose "$@"; }
cleanup() {
    set +e   # every step runs, whatever failed before it
    if [ -n "$AGENT" ]; then
        nb ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" rm -f >/dev/null 2>&1
        kill "$AGENT" 2>/dev/null
        wait "$AGENT" 2>/dev/null
    fi
    [ -z "$MOSQ" ] || { kill "$MOSQ" 2>/dev/null; wait "$MOSQ" 2>/dev/null; }
    [ -z "$DOCK_PID" ] || dkc -f "$BENCH_TMP/app.yaml" -p benchapp down >/dev/null 2>&1
    dockerd_stop
    unmount_under "$BENCH_TMP"
}
trap cleanup EXIT

app_yaml() {  # app_yaml REV [NAME]: the application's file for revision REV (docker-compose 1.29
    local svc  # takes no top-level name: it gets -p)
    {
        [ -z "${2:-}" ] || echo "name: $2"
        echo "services:"
        for svc in server client; do
            cat <<YAML
  $svc:
    image: bench:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    environment: {REV: "$1"}
    network_mode: host
    healthcheck: {test: ["CMD", "true"], interval: 500ms}
YAML
        done
        printf '    depends_on:\n      server: {condition: service_healthy}\n'
    } >"$BENCH_TMP/app.yaml"
}

# downtime EVENTS_JSON_LINES: ms from the first die to the last healthy after it.
downtime() {
    "$PY" - "$1" <<'PY'
import json, sys
die, healthy = None, None
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    a, t = e.get("Action") or e.get("status", ""), int(e.get("timeNano", 0))
    if a == "die" and (die is None or t < die):
        die = t
    if a == "health_status: healthy" and die is not None and t > die and (healthy is None or t > healthy):
        healthy = t
if die is None or healthy is None:
    sys.exit("no die followed by a healthy event")
print(f"{(healthy - die) / 1e6:.1f}")
PY
}

# --- berth: a broker and an agent, the application pushed over MQTT ------------------------------
mosquitto_start
"$BERTH_FULL" fleet --mqtt "$url" keygen --out "$BENCH_TMP/key" >/dev/null
nb load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
"$BERTH" --root "$BENCH_TMP/dev" -H "unix://$BENCH_TMP/dev.sock" agent --mqtt "$url" --device-id bench-app \
    --default-network host --trust "$BENCH_TMP/key.pub" </dev/null 2>>"$BENCH_TMP/agent.log" &
AGENT=$!
for _ in $(seq 100); do
    [ "$(mosquitto_sub -p "$port" -t berth/v1/bench-app/status -C 1 -W 1 2>/dev/null)" = online ] && break
done
berth_push() {
    app_yaml "$1" benchapp
    "$BERTH_FULL" fleet --mqtt "$url" push --key "$BENCH_TMP/key" --to bench-app --health-window 1 --app "$BENCH_TMP/app.yaml"
}
berth_push 0 >"$BENCH_TMP/push.0" 2>&1 || die "the first push failed: $(tail -n 3 "$BENCH_TMP/push.0" | tr '\n' ' ')"

# --- docker: dockerd in a network namespace of its own -------------------------------------------
docker_ok='' docker_err=''
if ! command -v docker-compose >/dev/null; then
    docker_err="docker-compose is not installed (apt-get install docker-compose)"
else
    dockerd_start "bench-appupd-dock-$$"
    docker_err=$DOCKER_ERR
    if [ -z "$docker_err" ]; then
        app_yaml 0
        if dkc -f "$BENCH_TMP/app.yaml" -p benchapp up -d >/dev/null 2>"$BENCH_TMP/docker/up.err"; then
            docker_ok=1
        else
            docker_err="docker-compose up: $(tail -n 2 "$BENCH_TMP/docker/up.err" | tr '\n' ' ' | cut -c1-300)"
        fi
    fi
fi
[ -n "$docker_ok" ] || log "$docker_err"
# Both engines' services are healthy before the first timed round.
sleep 2

declare -A t
runs=$(( BENCH_RUNS < 6 ? BENCH_RUNS : 6 ))
# berth's --since/--until take whole seconds: each window starts a second after the last one's
# events, and ends at the next whole second.
window_start() { sleep 1.1; date +%s; }
window_end() { echo $(( $(date +%s) + 1 )); }
for i in $(seq "$runs"); do
    since=$(window_start)
    berth_push "$i" >"$BENCH_TMP/push.$i" 2>&1 || die "push $i failed: $(tail -n 3 "$BENCH_TMP/push.$i" | tr '\n' ' ')"
    nb events --since "$since" --until "$(window_end)" --format json >"$BENCH_TMP/berth-events.$i"
    ms=$(downtime "$BENCH_TMP/berth-events.$i") || die "berth round $i: $(tail -n 1 "$BENCH_TMP/berth-events.$i")"
    t[berth]="${t[berth]:-} $ms"
    if [ -n "$docker_ok" ]; then
        since=$(window_start)
        app_yaml "$i"
        if dkc -f "$BENCH_TMP/app.yaml" -p benchapp up -d >/dev/null 2>"$BENCH_TMP/docker/up.$i"; then
            # up -d returns once the containers started: wait for the new ones to be healthy.
            for _ in $(seq 100); do
                [ "$(dk ps --filter label=com.docker.compose.project=benchapp --filter health=healthy -q | wc -l)" = 2 ] && break
                sleep 0.1
            done
            dk events --since "$since" --until "$(window_end)" --format '{{json .}}' >"$BENCH_TMP/docker-events.$i"
            if ms=$(downtime "$BENCH_TMP/docker-events.$i"); then t[docker]="${t[docker]:-} $ms"; else docker_err="round $i: no die then healthy"; docker_ok=''; fi
        else
            docker_err="docker-compose up round $i: $(tail -n 2 "$BENCH_TMP/docker/up.$i" | tr '\n' ' ' | cut -c1-300)"
            docker_ok=''
        fi
    fi
done
# shellcheck disable=SC2086
bs=$(spread ${t[berth]})
if [ -z "${t[docker]:-}" ] || [ -n "$docker_err" ]; then
    # shellcheck disable=SC2086
    emit what="application update, old revision stopped to new revision healthy (2 services, health checks every 500 ms)" \
        chart="app update downtime, vs docker-compose" unit=ms berth="$(median ${t[berth]})" peer_name="docker-compose up -d" peer= \
        how="$runs rounds; berth $bs" error="docker could not run: ${docker_err:-no rounds}"
else
    # shellcheck disable=SC2086
    emit what="application update, old revision stopped to new revision healthy (2 services, health checks every 500 ms)" \
        chart="app update downtime, vs docker-compose" unit=ms berth="$(median ${t[berth]})" \
        peer_name="docker-compose $(docker-compose version --short 2>/dev/null) up -d on dockerd $(dockerd --version | sed 's/^Docker version \([^,+]*\).*/\1/')" \
        peer="$(median ${t[docker]})" \
        how="$runs interleaved rounds, from each engine's events (first die to last health_status: healthy); berth fleet push --app over MQTT (no tarball) $bs; docker $(spread ${t[docker]})"
fi
