# shellcheck shell=bash
# Helpers for bench/rows/*.sh (sourced: `. "$BENCH_LIB"`). See the contract at the top of bench/run.

PY=${PY:-/usr/bin/python3}
# A row killed by bench/run's timeout (SIGTERM) still runs its EXIT trap (its cleanup).
trap 'exit 143' TERM
trap 'exit 130' INT

log() { echo "  [$BENCH_ROW] $*" >&2; }
die() { echo "  [$BENCH_ROW] error: $*" >&2; exit 1; }

# emit KEY=VALUE...: one result line (JSON) on stdout. berth, peer, ratio are numbers (empty: null);
# everything else is text. `row` defaults to $BENCH_ROW.
emit() {
    "$PY" - "$BENCH_ROW" "$@" <<'PY'
import json, sys
d = {"row": sys.argv[1]}
for kv in sys.argv[2:]:
    k, _, v = kv.partition("=")
    if k in ("berth", "peer", "ratio", "limit"):
        d[k] = float(v) if v not in ("", "null", "None") else None
    else:
        d[k] = v
print(json.dumps(d), flush=True)
PY
}

# stats V...: "median q1 q3 min max n" (quartiles by linear interpolation).
stats() {
    "$PY" - "$@" <<'PY'
import statistics, sys
v = sorted(float(x) for x in sys.argv[1:])
if len(v) == 1:
    q1 = q3 = v[0]
else:
    q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
f = lambda x: f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"
print(f(statistics.median(v)), f(q1), f(q3), f(v[0]), f(v[-1]), len(v))
PY
}

# spread V...: "median X (IQR a–b, min–max c–d)" text for the `how` field.
spread() {
    local m q1 q3 lo hi
    read -r m q1 q3 lo hi _ <<<"$(stats "$@")"
    echo "median $m, IQR $q1–$q3, min–max $lo–$hi"
}
median() { local m rest; read -r m rest <<<"$(stats "$@")"; echo "$m"; }

# rotated I NAME...: the NAMEs rotated left by I (modulo their count). Rows that time contenders
# in rounds start round I at the I-th, so that each one follows each other equally often: what a
# contender leaves to the kernel after it exits (podman's network namespace and cgroups are torn
# down asynchronously) then does not always land on the same next one. With a fixed order it did:
# row 10's berth, always right after podman, measured 23 ms against crun's 12; with crun in that
# place it was crun 19 ms against berth's 12.
rotated() {
    local i=$1; shift
    local n=$# k
    for k in $(seq 0 $((n - 1))); do
        local j=$(( (i + k) % n + 1 ))
        printf '%s\n' "${!j}"
    done
}
# time_ms CMD...: runs CMD (output to $BENCH_TMP/last.out/.err), prints its wall time in ms.
# Returns CMD's status.
time_ms() {
    local s e rc=0
    s=$EPOCHREALTIME
    "$@" >"$BENCH_TMP/last.out" 2>"$BENCH_TMP/last.err" || rc=$?
    e=$EPOCHREALTIME
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
    return "$rc"
}
last_err() { tail -n 3 "$BENCH_TMP/last.err" 2>/dev/null | tr '\n' ' ' | cut -c1-300; }

# in_wrapper CMD...: CMD in a private mount namespace without the cgroup2 mount: crun refuses
# hybrid cgroup hosts otherwise (../shared/PEERS.md). Every start-time contender runs in it.
in_wrapper() { unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' wrapper "$@"; }

# pss PID...: summed proportional set size (kB) of the processes (0 for those gone).
pss() {
    smaps_kb Pss "$@"
}

# smaps_kb FIELD PID...: the sum of FIELD (Pss, Rss, Anonymous, ...) in kB over the processes'
# smaps_rollup (0 for a process that is gone).
smaps_kb() {
    local f=$1 p v t=0
    shift
    for p in "$@"; do
        v=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# pids_matching STRING: pids whose command line contains STRING (a path: no regex characters but '.').
pids_matching() { pgrep -f -- "$1" || true; }
kb_to_mb() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }

# unmount_under DIR: detaches every mount below DIR, deepest first (peers' storage drivers leave
# private bind mounts and overlays behind).
unmount_under() {
    local m
    awk -v d="$1" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

# --- berth --------------------------------------------------------------------------------------
# b ARGS...: the CLI against the agent berth_agent_start started.
b() { "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" "$@"; }
# berth_agent_start DIR: an agent on DIR/root, its socket DIR/agent.sock; sets AGENT_PID.
berth_agent_start() {
    BERTH_DIR=$1
    mkdir -p "$BERTH_DIR"
    [ -d "$BERTH_DIR/root" ] || b load -q -i "$BENCH_WORK/busybox.tar" >/dev/null
    "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" agent --default-network host </dev/null >>"$BERTH_DIR/agent.log" 2>&1 &
    AGENT_PID=$!
    local _i
    for _i in $(seq 100); do
        b ps -q >/dev/null 2>&1 && return 0
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "berth agent did not start: $(tail -n 3 "$BERTH_DIR/agent.log")"
}
berth_agent_stop() {
    [ -n "${AGENT_PID:-}" ] || return 0
    b ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$BERTH_DIR/root" -H "unix://$BERTH_DIR/agent.sock" rm -f >/dev/null 2>&1 || true
    kill "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
}

# --- mosquitto ------------------------------------------------------------------------------------
# mosquitto_start [LINE...]: a private broker on a free loopback port, the LINEs added to its
# configuration; sets MOSQ (its pid, for the row's cleanup), port and url, and returns once it
# takes a publish (or after 5 s: the row's first use then says what is wrong).
mosquitto_start() {
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    {
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port"
        [ "$#" -eq 0 ] || printf '%s\n' "$@"
    } >"$BENCH_TMP/mosquitto.conf"
    mosquitto -c "$BENCH_TMP/mosquitto.conf" >"$BENCH_TMP/mosquitto.log" 2>&1 &
    MOSQ=$!
    url=mqtt://127.0.0.1:$port
    local _i
    for _i in $(seq 50); do mosquitto_pub -p "$port" -t bench/ping -m x 2>/dev/null && return 0; sleep 0.1; done
}

# --- podman (private storage, settings from ../shared/PEERS.md) ---------------------------------
export PODMAN_IMAGE=docker.io/library/bench:1
pod() {
    CONTAINERS_CONF=$BENCH_WORK/containers.conf podman --root "$PODMAN_DIR/root" --runroot "$PODMAN_RUN" \
        --tmpdir "$PODMAN_DIR/tmp" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file \
        --runtime runc "$@"
}
# podman_setup DIR: private podman storage in DIR with the bench image loaded (the run root, whose
# path podman wants under 50 characters, in /tmp).
podman_setup() {
    PODMAN_DIR=$1
    PODMAN_RUN=$(mktemp -d /tmp/bench-podman.XXXXXX)
    mkdir -p "$PODMAN_DIR"
    pod load -q -i "$BENCH_WORK/busybox.tar" >/dev/null 2>"$PODMAN_DIR/load.err" || return 1
}
# podman_quiesce [all]: waits (up to 10 s) until nothing of this podman is left running but its
# containers' conmons (with "all", not even those): `podman run --rm` returns before conmon's
# `podman container cleanup` has finished, and that would take the CPU from whatever is measured
# next. Then, with "all", a short pause for the kernel's deferred teardown of the namespaces and
# cgroups podman let go (no process shows that; see rotated for what it cost the next runner).
podman_quiesce() {
    local _i p busy
    for _i in $(seq 200); do
        busy=''
        for p in $(pids_matching "$PODMAN_RUN"); do
            [ "$(cat "/proc/$p/comm" 2>/dev/null)" = conmon ] && [ -z "${1:-}" ] && continue
            busy=1
            break
        done
        [ -n "$busy" ] || break
        sleep 0.05
    done
    [ -z "${1:-}" ] || sleep 0.2
}
podman_teardown() {
    [ -n "${PODMAN_DIR:-}" ] || return 0
    pod rm -af -t 0 >/dev/null 2>&1 || true
    podman_quiesce all   # conmon's `podman container cleanup` would recreate the run root
    unmount_under "$PODMAN_DIR"
    unmount_under "$PODMAN_RUN"
    rm -rf "$PODMAN_RUN"
    PODMAN_DIR="" PODMAN_RUN=""
}

# --- OCI bundle for runc/crun: the same rootfs as the berth image -------------------------------
# bundle DIR ARGS...: DIR/config.json running ARGS over rootfs $BENCH_WORK/rootfs (read-write, as
# berth's). Extra jq-free edits through $BUNDLE_MEMORY (bytes: memory limit, swap off).
bundle() {
    local dir=$1
    shift
    mkdir -p "$dir"
    "$PY" - "$BENCH_WORK/config.json" "$dir/config.json" "$BENCH_WORK/rootfs" "${BUNDLE_MEMORY:-}" "$@" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"] = {"path": sys.argv[3], "readonly": False}
c["process"]["terminal"] = False
c["process"]["args"] = sys.argv[5:]
if sys.argv[4]:
    m = int(sys.argv[4])
    c.setdefault("linux", {}).setdefault("resources", {})["memory"] = {"limit": m, "swap": m}
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}

# --- Docker in a network namespace of its own ---------------------------------------------------
# dockerd_start NS: Debian's dockerd (and the containerd it starts) alone in network namespace NS
# (made here), so its bridge, its NAT rules and its br_netfilter settings live and die there; a
# `modprobe` that does nothing comes first in its PATH, so it cannot load kernel modules for the
# machine. Private data root ($BENCH_TMP/docker/data) and exec root (a fresh /tmp dir: socket paths
# must stay short); busybox.tar loaded. Sets DOCK_NS, DOCK_PID, DOCK_EXEC, and DOCKER_ERR (empty
# when it is ready). dk ARGS...: the docker CLI against it. dockerd_stop: stops it, removes what
# it made (call from the row's EXIT trap; safe when it never started).
DOCK_NS='' DOCK_PID='' DOCK_EXEC='' DOCKER_ERR=''
dk() { DOCKER_HOST="unix://$DOCK_EXEC/d.sock" /usr/bin/docker "$@"; }
dockerd_start() {
    DOCK_NS=$1
    if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then
        DOCKER_ERR="dockerd is not installed (apt-get install docker.io)"
        return 0
    fi
    ip netns add "$DOCK_NS"
    ip -n "$DOCK_NS" link set lo up
    DOCK_EXEC=$(mktemp -d /tmp/bench-docker.XXXXXX)
    mkdir -p "$BENCH_TMP/docker" "$DOCK_EXEC/bin"
    printf '#!/bin/sh\nexit 1\n' >"$DOCK_EXEC/bin/modprobe" && chmod 755 "$DOCK_EXEC/bin/modprobe"
    nsenter --net="/run/netns/$DOCK_NS" -- env PATH="$DOCK_EXEC/bin:/usr/sbin:/usr/bin:/sbin:/bin" dockerd \
        --storage-driver=overlay2 --data-root "$BENCH_TMP/docker/data" --exec-root "$DOCK_EXEC/x" \
        --pidfile "$DOCK_EXEC/d.pid" -H "unix://$DOCK_EXEC/d.sock" --ip6tables=false \
        </dev/null >"$BENCH_TMP/docker/dockerd.log" 2>&1 &
    DOCK_PID=$!
    local _i
    for _i in $(seq 150); do dk version >/dev/null 2>&1 && break; kill -0 "$DOCK_PID" 2>/dev/null || break; sleep 0.2; done
    if ! dk version >/dev/null 2>&1; then
        DOCKER_ERR="dockerd did not start: $(grep -iE 'error|fail' "$BENCH_TMP/docker/dockerd.log" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
    elif ! dk load -q -i "$BENCH_WORK/busybox.tar" >/dev/null 2>"$BENCH_TMP/docker/load.err"; then
        DOCKER_ERR="docker load: $(tail -n 2 "$BENCH_TMP/docker/load.err" | tr '\n' ' ')"
    fi
}
dockerd_stop() {
    if [ -n "$DOCK_PID" ]; then
        # Bounded: a dockerd that wedges while removing 200 containers (seen once) must not take
        # the row's results with it; stopping the daemons below ended its containers then too.
        dk ps -aq 2>/dev/null | timeout 180 xargs -r /usr/bin/docker -H "unix://$DOCK_EXEC/d.sock" rm -f >/dev/null 2>&1 || true
        timeout 30 /usr/bin/docker -H "unix://$DOCK_EXEC/d.sock" network prune -f >/dev/null 2>&1 || true
        kill "$DOCK_PID" 2>/dev/null || true
        local _i
        for _i in $(seq 150); do kill -0 "$DOCK_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCK_PID" 2>/dev/null || true
        wait "$DOCK_PID" 2>/dev/null || true
        DOCK_PID=''
    fi
    [ -z "$DOCK_EXEC" ] || { unmount_under "$DOCK_EXEC"; rm -rf "$DOCK_EXEC"; DOCK_EXEC=''; }
    unmount_under "$BENCH_TMP/docker"
    [ -z "$DOCK_NS" ] || [ ! -e "/run/netns/$DOCK_NS" ] || ip netns del "$DOCK_NS" || log "cannot delete network namespace $DOCK_NS"
}
