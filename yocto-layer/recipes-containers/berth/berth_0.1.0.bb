SUMMARY = "Small static container engine for boards, with Docker's CLI"
DESCRIPTION = "berth runs a board's applications as containers (Docker's CLI and \
               image formats) and, through its agent, takes new images and rollbacks from a \
               fleet over MQTT."
SECTION = "admin"
# berth itself is MIT. The binary also links crates whose licences are MIT OR Apache-2.0 (taken
# as MIT), lzma-rust2 (Apache-2.0) and libbz2-rs-sys (bzip2-1.0.6).
LICENSE = "MIT & Apache-2.0 & bzip2-1.0.6"
LIC_FILES_CHKSUM = "file://LICENSE;md5=25c94a120c37f43e142a333dc8636586"

# The layer is the yocto-layer/ directory of berth's repository, so by default the recipe builds
# the head of BERTH_GIT_BRANCH of that repository. For a fixed build, pin the commit
# (SRCREV:pn-berth = "<sha1>"), or point BERTH_GIT_REPO at a published copy of the repository
# (e.g. "example.com/berth.git;protocol=https").
BERTH_SRC_DIR := "${@os.path.normpath('${THISDIR}/../../..')}"
BERTH_GIT_REPO ?= "${BERTH_SRC_DIR};protocol=file"
BERTH_GIT_BRANCH ?= "main"
PV .= "+git"

SRC_URI = "git://${BERTH_GIT_REPO};branch=${BERTH_GIT_BRANCH};destsuffix=${BP} \
           file://berth.service \
           file://berth.init \
           file://berth.toml \
           "
require ${BPN}-crates.inc
SRCREV ?= "${AUTOREV}"

# Sources unpack to UNPACKDIR from styhead on, to WORKDIR before (scarthgap).
BERTH_FILES = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${BERTH_FILES}/${BP}"

inherit cargo systemd update-rc.d

# The workspace's release profile strips the binary; leave that to packaging, so berth-dbg
# has the symbols.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# A device build: without the fleet operator tool (`berth fleet`, the default feature `fleet`).
CARGO_BUILD_FLAGS:append = " --no-default-features"

# Cargo features, all off by default; they need the matching cargo features of berth.
PACKAGECONFIG ??= ""
PACKAGECONFIG:class-native = ""
# MQTT over TLS 1.3 is always built in; "tls12" adds TLS 1.2 for older brokers (about 65 KB).
PACKAGECONFIG[tls12] = "--features berth/tls12,,,ca-certificates"
# "registry": berth pull/push/login on the device; "compose": berth compose (the YAML reader).
PACKAGECONFIG[registry] = "--features berth/registry"
PACKAGECONFIG[compose] = "--features berth/compose"
# The cargo class hands PACKAGECONFIG_CONFARGS to cargo from walnascar on; scarthgap's does not.
# Naming a feature twice is harmless.
CARGO_BUILD_FLAGS:append = " ${PACKAGECONFIG_CONFARGS}"

# ring's curve25519 in its small form on aarch64 too, as ring builds it for every target but
# x86_64 and aarch64: the Ed25519 base-point table (24 KB) is expanded at run time (only an
# Ed25519 client key's TLS signature uses it). The same as scripts/xbuild's device builds.
CFLAGS:append:aarch64 = " -DOPENSSL_SMALL"

# The board profile: board-configs/${BERTH_BOARD}.toml of the source tree becomes
# /etc/berth/board.toml. That makes the package machine-specific.
BERTH_BOARD ?= "${MACHINE}"
PACKAGE_ARCH = "${MACHINE_ARCH}"

SYSTEMD_SERVICE:${PN} = "berth.service"
INITSCRIPT_NAME = "berth"
INITSCRIPT_PARAMS = "defaults 90 10"

do_install:append:class-target() {
    install -d ${D}${sysconfdir}/berth
    install -m 0644 ${BERTH_FILES}/berth.toml ${D}${sysconfdir}/berth/berth.toml
    if [ -f ${S}/board-configs/${BERTH_BOARD}.toml ]; then
        install -m 0644 ${S}/board-configs/${BERTH_BOARD}.toml ${D}${sysconfdir}/berth/board.toml
    elif [ "${BERTH_BOARD}" != "${MACHINE}" ]; then
        bbfatal "BERTH_BOARD = ${BERTH_BOARD}: board-configs/${BERTH_BOARD}.toml is not in berth's source"
    fi
    install -d -m 0700 ${D}${localstatedir}/lib/berth

    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${BERTH_FILES}/berth.service ${D}${systemd_system_unitdir}/berth.service
    fi
    # The SysV script: for sysvinit, and for busybox init (neither sysvinit nor systemd).
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', bb.utils.contains('DISTRO_FEATURES', 'systemd', 'false', 'true', d), d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${BERTH_FILES}/berth.init ${D}${sysconfdir}/init.d/berth
    fi
    # Busybox init runs /etc/rc5.d/S* at boot and /etc/rc6.d/K* at shutdown; update-rc.d only
    # links scripts when DISTRO_FEATURES has sysvinit.
    if ${@bb.utils.contains_any('DISTRO_FEATURES', 'sysvinit systemd', 'false', 'true', d)}; then
        install -d ${D}${sysconfdir}/rc5.d ${D}${sysconfdir}/rc6.d
        ln -sf ../init.d/berth ${D}${sysconfdir}/rc5.d/S90berth
        ln -sf ../init.d/berth ${D}${sysconfdir}/rc6.d/K10berth
    fi
}

CONFFILES:${PN} = "${sysconfdir}/berth/berth.toml"

# The agent mounts, forks, sets up cgroups and makes its links, addresses and netfilter rules
# (over netlink) itself: it needs no other program at run time. It does need the kernel options
# of recipes-kernel/linux/files/berth.cfg; where a kernel builds them as modules, install those.
RRECOMMENDS:${PN}:class-target = "kernel-module-overlay kernel-module-veth kernel-module-bridge \
                                  kernel-module-nf-tables kernel-module-nf-conntrack kernel-module-nf-nat kernel-module-nft-nat \
                                  kernel-module-nft-masq kernel-module-nft-ct kernel-module-nft-fib-ipv4 \
"

BBCLASSEXTEND = "native"
