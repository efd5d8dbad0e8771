#!/usr/bin/env bash
# scripts/board/tls-ed25519.sh BINARY [RUNNER]
#
# Whether a firmware binary's agent gets onto a mutual-TLS mosquitto with an Ed25519 client key:
# the TLS 1.3 CertificateVerify is then an Ed25519 signature of berth's (ring's base-point
# multiplication in its OPENSSL_SMALL form, which both ARM builds use: scripts/xbuild), checked by
# mosquitto's OpenSSL. RUNNER runs a foreign binary here (qemu-aarch64-static, qemu-arm-static).
# Run by scripts/board-test on this side, before the board boots. Everything happens in a network
# namespace of its own (loopback only). Exit 0: connected; 1: not (the logs are printed).
set -uo pipefail
bin=${1:?usage: scripts/board/tls-ed25519.sh BINARY [RUNNER]}
runner=${2:-}
bin=$(readlink -f "$bin")
dir=$(mktemp -d /tmp/berth-tls-ed25519.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
ssl() { openssl "$@" >/dev/null 2>&1 || { echo "tls-ed25519: openssl $* failed" >&2; exit 1; }; }
# A P-256 CA; the broker's certificate for 127.0.0.1 (P-256); the client's, Ed25519.
printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = berth-ed25519-ca\n[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n' >ca.cnf
ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
ssl req -new -x509 -config ca.cnf -extensions v3 -key ca.key -days 2 -out ca.crt
leaf() { # NAME USAGE EXTRA-LINE GENPKEY-ARGS...
    local n=$1 usage=$2 extra=$3
    shift 3
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = %s\nauthorityKeyIdentifier = keyid\n%s\n' "$n" "$usage" "$extra" >"$n.cnf"
    ssl genpkey "$@" -out "$n.key"
    ssl req -new -config "$n.cnf" -key "$n.key" -out "$n.csr"
    ssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -set_serial "$RANDOM" -days 2 -extfile "$n.cnf" -extensions ext -out "$n.crt"
}
leaf broker serverAuth 'subjectAltName = IP:127.0.0.1' -algorithm EC -pkeyopt ec_paramgen_curve:P-256
leaf edclient clientAuth '' -algorithm ed25519
# The update key an agent on a broker must trust (any will do: nothing is pushed).
ssl genpkey -algorithm ed25519 -out update.key
ssl pkey -in update.key -pubout -out update.pub
printf 'per_listener_settings false\nlistener 8883 127.0.0.1\npersistence false\nuser root\nlog_dest stderr\nlog_type all\nconnection_messages true\ncafile %s/ca.crt\ncertfile %s/broker.crt\nkeyfile %s/broker.key\nrequire_certificate true\nuse_identity_as_username true\n' "$dir" "$dir" "$dir" >mosquitto.conf
# BERTH_EXE_READ_ONLY: the agent skips its re-exec from a read-only mount of /proc/self/exe, which
# under qemu-user is QEMU itself (on the board it is berth).
unshare -n bash -c '
    ip link set lo up
    mosquitto -c mosquitto.conf >mosquitto.log 2>&1 & mp=$!
    for _ in $(seq 50); do grep -q "running" mosquitto.log && break; sleep 0.1; done
    BERTH_EXE_READ_ONLY=1 '"$runner"' "'"$bin"'" --root "$PWD/root" -H "unix://$PWD/agent.sock" agent --default-network host \
        --mqtt mqtts://127.0.0.1:8883 --device-id ed25519-check --trust update.pub \
        --mqtt-ca ca.crt --mqtt-cert edclient.crt --mqtt-key edclient.key >agent.log 2>&1 & ap=$!
    for _ in $(seq 120); do grep -q "u.edclient." mosquitto.log && break; sleep 0.5; done
    kill $ap $mp 2>/dev/null; wait $ap $mp 2>/dev/null
'
if grep -q "u'edclient'" mosquitto.log; then
    exit 0
fi
echo "tls-ed25519: $bin did not get onto the broker with its Ed25519 client key" >&2
echo "  mosquitto:" >&2; tail -n 8 mosquitto.log | sed 's/^/    /' >&2
echo "  agent:" >&2; tail -n 8 agent.log | sed 's/^/    /' >&2
exit 1
