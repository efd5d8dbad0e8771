# shellcheck shell=sh disable=SC2016,SC2154
# The smoke suite's container-network checks (busybox sh), sourced by scripts/board/smoke.sh,
# which calls net_checks once per ARCH with its agent running (on the host network, as a board
# without bridge modules is configured).
#
# The board's initramfs carries the modules bridge networks need (scripts/board-test's module
# list: bridge, veth, nf_tables and the nft expressions berth's rules use, with nf_nat and
# nf_conntrack), so `berth check` must find them. net_checks then restarts the agent without
# --default-network host (containers default to the bridge berth0, as Docker's) and checks:
# a run on the default bridge; `network create`; two containers on that network reaching each
# other by name through the embedded DNS responder; a port published with -p reached from the
# board's own namespace (its "host side": loopback and the bridge's gateway address), and
# `berth port`. Afterwards it removes what it made (containers, the network) and starts the
# host-network agent again; the next ARCH's net_checks deletes the berth0 this one leaves.

# The agent as smoke.sh's start_agent starts it, but on the default bridge network.
net_start_agent() {
    "$BERTH" --root "$ROOT" -H "unix://$SOCK" agent >>"/tmp/agent-$A.log" 2>&1 &
    AGENT=$!
    i=0
    while [ $i -lt 150 ]; do
        if [ -S "$SOCK" ] && ! "$BERTH" --root "$ROOT" -H "unix://$SOCK" stop probe-no-such-container 2>&1 | grep -q "Cannot connect"; then
            return 0
        fi
        kill -0 $AGENT 2>/dev/null || break
        sleep 0.2; i=$((i + 1))
    done
    cp "/tmp/agent-$A.log" "$OUT"
    return 1
}

# HTTP/1.0 GET of / with busybox nc (Debian's busybox-static wget segfaults, bookworm's 1.35 build).
# http_get HOST PORT: the response's "page from ..." line. net_get HOST PORT: that on the board
# itself, in $got (empty on failure).
http_get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 "$1" "$2" | grep '^page from '; }
net_get() { got=$(http_get "$1" "$2" 2>>"$OUT"); }

net_checks() {
    NET=smokenet-$A
    # A web root with a page naming the container, then busybox httpd in the foreground.
    web='busybox mkdir -p /www && echo "page from $(busybox hostname)" >/www/index.html && exec busybox httpd -f -p 80 -h /www'

    check "berth check: bridge networking available"
    b check
    if has "^Bridge networks: kernel options present"; then pass
    else fail "berth check (exit $rc) does not report the bridge-network options present"; fi

    check "agent on the default bridge network"
    # A berth0 left by an agent that is gone (the previous ARCH's, on its own root) holds the
    # default subnet: this root's agent would refuse it as overlapping a host route.
    kill "$AGENT"; wait "$AGENT" 2>/dev/null
    ip link del berth0 2>/dev/null
    if net_start_agent; then pass "pid $AGENT, no --default-network"
    else fail "the agent did not start without --default-network host"; start_agent; return; fi

    check "run on the default bridge (berth0)"
    b run --rm "$IMG" sh -c 'busybox ip -4 addr show eth0; busybox ip route'
    if [ "$rc" = 0 ] && has "inet 172\.17\." && has "^default via 172\.17\.0\.1 " && ip link show berth0 >/dev/null 2>&1; then
        pass "$(grep -o 'inet 172\.17\.[0-9.]*' "$OUT")"
    else fail "expected an eth0 address in 172.17.0.0/16 and a default route via 172.17.0.1 (exit $rc, berth0 present: $(ip link show berth0 >/dev/null 2>&1 && echo yes || echo no))"; fi

    check "network create"
    b network create "$NET" && b network inspect "$NET"
    if [ "$rc" = 0 ] && has '"Subnet"'; then pass "$NET: $(grep -o '"Subnet": *"[^"]*"' "$OUT" | head -n 1)"
    else fail "network create/inspect $NET: exit $rc"; fi

    check "two containers on $NET resolve each other by name"
    b run -d --name "web-$A" --network "$NET" "$IMG" sh -c "$web"; r1=$rc
    b run -d --name "peer-$A" --network "$NET" "$IMG" sleep 600; r2=$rc
    # The peer fetches the page by the web container's name, and the web container looks the peer up.
    i=0; while [ $i -lt 25 ]; do
        b exec "peer-$A" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 5 web-$A 80"; has "^page from " && break
        sleep 0.2; i=$((i + 1))
    done
    page=$(grep '^page from ' "$OUT" | tr -d '\r')
    b exec "peer-$A" busybox ip -4 addr show eth0; peerip=$(sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p' "$OUT" | head -n 1)
    b exec "web-$A" busybox nslookup "peer-$A"; looked=$(sed -n '/^Name:/,$p' "$OUT" | grep -c "Address.*$peerip\$")
    if [ $r1 = 0 ] && [ $r2 = 0 ] && [ "${page#page from }" != "$page" ] && [ -n "$peerip" ] && [ "$looked" -ge 1 ]; then
        pass "peer-$A got '$page' from web-$A:80 by name; web-$A resolved peer-$A to $peerip"
    else
        fail "run -d exits $r1/$r2; peer's GET of web-$A:80 by name: '$page'; web's nslookup peer-$A: $looked answer(s) $peerip"
    fi

    check "-p 8080:80 reached from the board's own namespace"
    # scripts/board/init leaves lo down (a board's own init brings it up): up for 127.0.0.1.
    ip link set lo up
    b run -d --name "pub-$A" -p 8080:80 "$IMG" sh -c "$web"; prc=$rc
    i=0; while [ $i -lt 25 ]; do net_get 127.0.0.1 8080 && [ -n "$got" ] && break; sleep 0.2; i=$((i + 1)); done
    lo=$got
    net_get 172.17.0.1 8080; gw=$got
    b port "pub-$A" 80; port=$(head -n 1 "$OUT")
    case "$lo:$gw:$port" in
        "page from "*":page from "*":"*":8080") pass "127.0.0.1:8080 and 172.17.0.1:8080 answered; berth port: $port" ;;
        *) b logs "pub-$A"; fail "run -d -p exit $prc; 127.0.0.1:8080 gave '$lo', 172.17.0.1:8080 gave '$gw'; berth port: '$port'" ;;
    esac

    check "network rm after its containers"
    b rm -f "web-$A" "peer-$A" "pub-$A" >/dev/null
    if b network rm "$NET" && b network ls && ! has "$NET"; then pass; else fail "network rm $NET (exit $rc)"; fi

    # Back to the host-network agent for the rest of the suite (it keeps this root's berth0).
    kill "$AGENT"; wait "$AGENT" 2>/dev/null
    check "agent back on the host network"
    start_agent && pass "pid $AGENT" || fail "the host-network agent did not start again"
}
