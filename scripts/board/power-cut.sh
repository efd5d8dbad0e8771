#!/bin/sh
# The board side of scripts/power-cut (busybox sh, run by scripts/board/init as its payload).
#
#   power-cut.sh ARCH MODE [PHASE]
#     provision     make the test images (app:1..3 tarballs into /mnt/ctl), then wait for the
#                   host's first push (v1) and power off: the baseline disk of every trial
#     cut PHASE     start the agent and, for the board-side phases (load, runrm, logrot), do that
#                   work in a loop until the host cuts the power
#     check PHASE   start the agent on the disk that survived the cut and report what it finds
#                   in /mnt/ctl/result (key=value lines)
#
# Berth's root (/var/lib/berth) is the virtio disk /dev/vda (ext4, mounted with the defaults a
# Yocto image's fstab uses, plus `lazytime`, which docs/storage.md asks of berth's data partition:
# timestamps alone do not make inode writes). The agent is started as the board's init would: in the background,
# its log on the host's share (/mnt/ctl/agent-MODE.log) so that the host can watch for the
# moment to cut. The broker is on the host: 10.0.2.2 under QEMU's user networking.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
CTL=/mnt/ctl
A=$1 MODE=$2 PHASE=$3
BERTH=/mnt/dist/berth-$A
ROOT=/var/lib/berth
say() { echo "power-cut: $*"; }
mark() { echo "POWERCUT-$*"; }
b() { timeout 120 "$BERTH" "$@"; }

mkdir -p $ROOT /etc/berth
mount -t ext4 -o lazytime /dev/vda $ROOT || { say "cannot mount /dev/vda on $ROOT"; exit 1; }
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2 \
    || { say "no network (eth0)"; exit 1; }

# The app's restart policy brings it back after the boot; containers of the load/runrm/logrot
# phases are left behind by the cut.
t0=$(cut -d' ' -f1 /proc/uptime)
"$BERTH" agent --default-network host --mqtt "mqtt://10.0.2.2:$(cat $CTL/port)" --device-id "$(cat $CTL/device)" \
    --trust $CTL/fleet.key.pub >>"$CTL/agent-$MODE.log" 2>&1 &
AGENT=$!
i=0
while [ $i -lt 300 ]; do
    [ -S /run/berth/berth.sock ] && ! "$BERTH" stop probe-no-such-container 2>&1 | grep -q "Cannot connect" && break
    kill -0 $AGENT 2>/dev/null || { say "the agent exited"; exit 1; }
    sleep 0.1; i=$((i + 1))
done
say "agent ready after $(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $t0}") s"

# A root file system from Debian's busybox-static .deb (as scripts/board/smoke.sh makes it).
make_rootfs() {
    d=/tmp/rootfs
    rm -rf $d && mkdir -p $d
    deb=$(ls $CTL/debs/busybox-static_*_"$1".deb | head -n 1)
    dpkg-deb -x "$deb" $d || return 1
    for a in $(busybox --list); do [ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"; done
    mkdir -p $d/etc $d/tmp $d/root $d/proc $d/sys $d/dev
    echo "root:x:0:0:root:/root:/bin/sh" >$d/etc/passwd
    echo "root:x:0:" >$d/etc/group
}

case $MODE in
provision)
    case $A in aarch64) DEB=arm64 PLAT=linux/arm64 ;; armhf) DEB=armhf PLAT=linux/arm/v7 ;; esac
    make_rootfs $DEB || { say "cannot unpack busybox-static for $DEB"; exit 1; }
    for v in 1 2 3; do
        # A file of its own per version: each image has its own layer (a transfer and a load move
        # real bytes, not only a config).
        dd if=/dev/urandom of=/tmp/rootfs/payload bs=64k count=8 2>/dev/null
        echo "$v" >/tmp/rootfs/version
        b import -c 'CMD ["/bin/sh"]' -c "LABEL version=$v" --platform $PLAT /tmp/rootfs "app:$v" >/dev/null \
            && b save -o "$CTL/app$v.tar" "app:$v" && b rmi "app:$v" >/dev/null \
            || { say "cannot make app:$v"; exit 1; }
    done
    mark READY
    # The host pushes v1 (the app every trial starts from), then says go.
    while [ ! -e $CTL/go ]; do sleep 0.2; done
    b ps -a; b images
    kill $AGENT; wait $AGENT
    sync
    exit 0
    ;;
cut)
    mark READY
    case $PHASE in
    load)
        mark GO
        while :; do b load -i $CTL/app3.tar >/dev/null; b rmi app:3 >/dev/null; done
        ;;
    runrm)
        mark GO
        i=0
        while :; do
            b run -d --name "burst$i" app:1 sleep 600 >/dev/null
            b run --rm app:1 true
            b rm -f "burst$i" >/dev/null
            i=$((i + 1))
        done
        ;;
    logrot)
        b run -d --name chatty --log-opt max-size=8k --log-opt max-file=2 app:1 \
            sh -c 'i=0; while :; do echo "line $i of a chatty container, long enough to fill the log"; i=$((i+1)); done' >/dev/null
        # Some of its lines on the disk before the cut (left to the kernel, the first ones reach
        # it only after ext4's 5 s commit): the cut then lands among lines written in place
        # after durable ones, torn tails and gaps included.
        sleep 1
        sync
        mark GO
        ;;
    esac
    while :; do sleep 1; done
    ;;
wear)
    # Flash wear (issue 18 item 5): bytes written to the disk, from the kernel's block statistics
    # (/sys/block/vda/stat, field 7: 512-byte sectors written), for each kind of work. Each figure
    # is measured between two settled points (sync, then 6 s for ext4's 5 s journal commit).
    sw() { awk '{print $7}' /sys/block/vda/stat; }
    settle() { sync; sleep 6; sync; }
    per() { awk "BEGIN{printf \"%.0f\", ($2 - $1) * 512 / $3}"; }
    i=0; while [ $i -lt 300 ]; do b inspect -f '{{.State.Running}}' app 2>/dev/null | grep -q true && break; sleep 0.1; i=$((i + 1)); done
    say "$(grep " $ROOT " /proc/mounts)"
    settle; w0=$(sw); sleep 60; settle; w1=$(sw)
    echo "POWERCUT-WEAR idle-agent-1-container bytes/hour $(per "$w0" "$w1" 1)x60"
    w0=$(sw)
    for i in 1 2 3 4 5; do b run -d --name "w$i" app:1 sleep 600 >/dev/null; b stop -t 1 "w$i" >/dev/null; b rm "w$i" >/dev/null; done
    settle; w1=$(sw)
    echo "POWERCUT-WEAR start+stop+rm bytes/container $(per "$w0" "$w1" 5)"
    b run -d --name hc --health-cmd true --health-interval 1s app:1 sleep 600 >/dev/null
    settle; w0=$(sw); sleep 60; settle; w1=$(sw)
    echo "POWERCUT-WEAR health-check(1s,60s,idle-included) bytes/check $(per "$w0" "$w1" 60)"
    b rm -f hc >/dev/null
    # One update pushed by the host (app:1 to app:2, the image's 512 KiB of its own and the
    # busybox layer it shares), measured from before the push to the commit, settled.
    settle; w0=$(sw)
    mark PUSH
    while [ ! -e $CTL/go ]; do sleep 0.2; done
    settle; w1=$(sw)
    echo "POWERCUT-WEAR update(app:1-to-app:2) bytes/update $(per "$w0" "$w1" 1)"
    for i in 1 2 3 4 5 6 7 8 9 10; do
        b run -d --name "log$i" app:1 sh -c 'i=0; while :; do echo "line $i"; i=$((i+1)); sleep 1; done' >/dev/null
    done
    settle; w0=$(sw); sleep 120; settle; w1=$(sw)
    echo "POWERCUT-WEAR idle-agent-10-containers-logging-1-line/s bytes/hour $(per "$w0" "$w1" 1)x30"
    kill $AGENT; wait $AGENT
    sync
    exit 0
    ;;
check)
    # The app must come back by itself (restart policy); an interrupted update is finished by the
    # agent from its journal. Then the host says when its push ended.
    i=0 app=""
    while [ $i -lt 600 ]; do
        app=$(b inspect -f '{{.Config.Image}} {{.State.Running}}' app 2>/dev/null)
        case "$app" in *" true") break ;; esac
        sleep 0.1; i=$((i + 1))
    done
    say "app after $(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $t0}") s: $app"
    mark READY
    while [ ! -e $CTL/go ]; do sleep 0.2; done
    app=$(b inspect -f '{{.Config.Image}} {{.State.Running}}' app 2>/dev/null)
    b system verify >/tmp/verify.out 2>&1
    vrc=$?
    tmps=$(find $ROOT \( -name '*.tmp' -o -name 'tmp-*' -o -name '*.partial' \) 2>/dev/null | head -n 5 | tr '\n' ' ')
    # After a cut in the log rotation phase: every line `logs` shows is whole, then again once the
    # container has logged after its torn end (its writer finds the end of its data again).
    # "lines/bad lines" before and after.
    logs=""
    if b inspect chatty >/dev/null 2>&1; then
        whole='^line [0-9]* of a chatty container, long enough to fill the log$'
        b logs chatty >/tmp/chatty.1 2>&1
        b start chatty >/dev/null 2>&1
        sleep 2
        b stop -t 1 chatty >/dev/null 2>&1
        b logs chatty >/tmp/chatty.2 2>&1
        logs="$(wc -l </tmp/chatty.1)/$(grep -cv "$whole" /tmp/chatty.1) $(wc -l </tmp/chatty.2)/$(grep -cv "$whole" /tmp/chatty.2)"
        grep -v "$whole" /tmp/chatty.2 | head -n 3 | sed 's/^/power-cut: not a whole line: /'
    fi
    {
        echo "app=$app"
        echo "verify=$vrc $(tail -n 1 /tmp/verify.out)"
        echo "tmp=$tmps"
        echo "updates=$(ls $ROOT/updates 2>/dev/null | grep -vx journal | tr "\n" " ")"
        echo "logs=$logs"
        echo "containers=$(b ps -a --format '{{.Names}}:{{.State}}' | tr '\n' ' ')"
    } >$CTL/result.tmp
    mv $CTL/result.tmp $CTL/result
    cat $CTL/result
    kill $AGENT; wait $AGENT
    sync
    exit 0
    ;;
esac
