# shellcheck shell=bash
# Sourced by scripts/xbuild and scripts/board-test: installs and downloads the Debian packages they
# need, on a Debian 12 (bookworm) x86_64 machine.
#
# The host's /etc/apt is left alone. A private source list (bookworm, -updates, -security,
# -backports) with its own index directory serves:
#   * installs of host (amd64) packages: `pkg_install PKG...`, `pkg_install -t bookworm-backports PKG...`
#   * downloads of arm64/armhf packages we only unpack (musl-dev, busybox-static, the kernel):
#     `pkg_download DIR PKG:ARCH...`. No `dpkg --add-architecture`: a foreign architecture in the
#     host's dpkg would make every later plain `apt-get update` fetch (and sometimes fail on) its
#     indexes, and scripts/test treats a failing `apt-get update` as fatal.
#
# Everything cached lives under $BERTH_CACHE (default /var/cache/berth).

BERTH_CACHE=${BERTH_CACHE:-/var/cache/berth}
_APT_DIR=$BERTH_CACHE/apt
export DEBIAN_FRONTEND=noninteractive

_apt_opts=(
    -o Dir::Etc::SourceList=/dev/null
    -o "Dir::Etc::SourceParts=$_APT_DIR/sources.list.d"
    -o "Dir::State::Lists=$_APT_DIR/lists"
    -o "Dir::Cache=$_APT_DIR/cache"
    -o APT::Sandbox::User=root          # downloads land in root-owned cache dirs
    -o DPkg::Lock::Timeout=900          # other jobs on this machine may be installing too
    -o Acquire::Retries=3
)

# Indexes and downloads also cover arm64 and armhf; installs stay amd64-only (the host's dpkg
# knows no other architecture).
_foreign=(-o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Architectures::=armhf)

# apt-get with the private sources. /tmp/apt.lock serialises us with other scripts that use it.
papt() {
    flock /tmp/apt.lock apt-get "${_apt_opts[@]}" "$@"
}

# Fetch the private indexes once a day (or when forced with BERTH_APT_UPDATE=1).
pkg_update() {
    local stamp=$_APT_DIR/updated
    if [ -z "${BERTH_APT_UPDATE:-}" ] && [ -n "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "deps: need root to fetch Debian's package indexes into $_APT_DIR" >&2
        return 1
    fi
    mkdir -p "$_APT_DIR/sources.list.d" "$_APT_DIR/lists/partial" "$_APT_DIR/cache/archives/partial"
    cat >"$_APT_DIR/sources.list.d/berth.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Architectures: amd64 arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    echo "deps: apt-get update (private lists in $_APT_DIR)" >&2
    # bookworm-security is limited to amd64 + arm64 above: its armhf index was often stale ("File
    # has unexpected size"), and one failed index makes apt drop that whole suite, Rust 1.96
    # included. Nothing we take for armhf comes from there. Other partial failures are not fatal;
    # a total one shows later as a package that cannot be found.
    papt "${_foreign[@]}" update -q >"$_APT_DIR/update.log" 2>&1 || echo "deps: apt-get update reported errors (see $_APT_DIR/update.log); continuing" >&2
    touch "$stamp"
}

# pkg_candidate PKG : the version apt would install from the private sources.
pkg_candidate() {
    pkg_update
    apt-cache "${_apt_opts[@]}" policy "$1" | sed -n 's/^ *Candidate: //p'
}

# pkg_install [-t RELEASE] PKG[=VERSION]... : install host packages that are missing (or not at
# VERSION). Needs root when something is missing.
pkg_install() {
    local rel=() missing=() p have
    if [ "${1:-}" = -t ]; then rel=(-t "$2"); shift 2; fi
    for p in "$@"; do
        have=$(dpkg-query -W -f='${Status} ${Version}' "${p%%=*}" 2>/dev/null || true)
        case "$have" in
            *"ok installed "*) [ "$p" = "${p%%=*}" ] || [ "${have##* }" = "${p#*=}" ] || missing+=("$p") ;;
            *) missing+=("$p") ;;
        esac
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]})" >&2
        return 1
    fi
    pkg_update
    echo "deps: installing ${missing[*]}" >&2
    papt install -y -q --no-install-recommends "${rel[@]}" "${missing[@]}" >"$_APT_DIR/install.log" 2>&1 || {
        tail -n 20 "$_APT_DIR/install.log" >&2
        echo "deps: apt-get install failed for: ${missing[*]}" >&2
        return 1
    }
    papt clean                          # the installed .debs; pkg_download's are kept elsewhere
}

# pkg_download DIR PKG[:ARCH][=VERSION]... : put each package's .deb in DIR (kept between runs).
pkg_download() {
    local dir=$1 p name arch; shift
    mkdir -p "$dir"
    for p in "$@"; do
        name=${p%%[:=]*}
        arch=${p#*:}; [ "$arch" = "$p" ] && arch=amd64; arch=${arch%%=*}
        compgen -G "$dir/${name}_*_$arch.deb" >/dev/null && continue
        pkg_update
        echo "deps: apt-get download $p" >&2
        (cd "$dir" && papt "${_foreign[@]}" download -q "$p" >/dev/null) || {
            echo "deps: cannot download $p from Debian (see $_APT_DIR/update.log)" >&2
            return 1
        }
    done
}

# pkg_unpack DEB DIR : dpkg-deb -x into DIR once (a stamp records which .deb it came from).
pkg_unpack() {
    local deb=$1 dir=$2
    [ "$(cat "$dir/.from" 2>/dev/null)" = "$(basename "$deb")" ] && return 0
    rm -rf "$dir" && mkdir -p "$dir" && dpkg-deb -x "$deb" "$dir" && basename "$deb" >"$dir/.from"
}
