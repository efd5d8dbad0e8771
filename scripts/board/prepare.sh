# shellcheck shell=bash
# Sourced by scripts/board-test and scripts/power-cut (after scripts/board/deps.sh): the emulated
# board's host packages, Debian's arm64 kernel and the initramfs built around scripts/board/init.
#
# board_prepare: installs QEMU 10 and the tools, downloads the kernel and busybox .debs, builds the
# initramfs when /init, the kernel or the module list changed. Sets: cache (the board's cache dir),
# kver, kroot (the unpacked kernel package), initrd. Needs log() and die() from the caller.
#
# Modules: overlay (container root file systems), 9p over virtio (the host's shares), virtio_blk +
# ext4 (scripts/power-cut's disk: berth's root on a block device, as on eMMC), virtio_net (user
# networking to a broker on the host, for the MQTT checks). Bridge networks (scripts/board/smoke-net.sh):
# bridge, veth, nf_tables with the nat chain type and the expressions berth's rules use
# (runtime/src/net/nft.rs: nat, masq, ct, fib), with nf_nat and nf_conntrack as their dependencies.
BOARD_MODULES="virtio_pci 9pnet_virtio 9p overlay virtio_blk ext4 virtio_net bridge veth nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib_ipv4"

board_prepare() {
cache=$BERTH_CACHE/board

    # QEMU 10 (bookworm-backports): its virt board has a second PL011 UART when -serial is given
    # twice (7.2 has one), and bookworm's 7.2 conflicts with the qemu-utils 10 this machine type ships.
    pkg_install -t bookworm-backports qemu-system-arm || die "cannot install qemu-system-arm from bookworm-backports"
    pkg_install kmod cpio socat gzip || die "cannot install kmod cpio socat gzip"
    for f in qemu-system-aarch64:qemu-system-arm depmod:kmod modprobe:kmod cpio:cpio socat:socat; do
        command -v "${f%%:*}" >/dev/null || die "missing ${f%%:*}: install Debian package ${f#*:}"
    done


    pkg_update
    kpkg=$(apt-cache "${_apt_opts[@]}" "${_foreign[@]}" depends linux-image-arm64:arm64 2>/dev/null \
        | sed -n 's/.*Depends: \(linux-image-[0-9.]*-[0-9]*-arm64\).*/\1/p' | head -n 1)
    [ -n "$kpkg" ] || die "cannot resolve Debian's linux-image-arm64 to a kernel package (see $BERTH_CACHE/apt/update.log)"
    kver=${kpkg#linux-image-}
    pkg_download "$cache/debs" "$kpkg:arm64" busybox-static:arm64 busybox-static:armhf || die "cannot download the board's packages"
    kroot=$cache/kernel-$kver
    if [ ! -f "$kroot/lib/modules/$kver/modules.dep" ]; then
        log "unpacking $kpkg"
        pkg_unpack "$(ls "$cache"/debs/"${kpkg}"_*_arm64.deb | tail -n 1)" "$kroot"
        depmod -b "$kroot" "$kver"           # the .deb ships no modules.dep
    fi
    grep -q '^CONFIG_COMPAT=y' "$kroot/boot/config-$kver" \
        || log "WARNING: $kpkg has no CONFIG_COMPAT: armhf binaries will not run on this board"


    # overlay: container root file systems. 9p + 9pnet_virtio (+ virtio_pci): the shares.
    modules=$BOARD_MODULES
    initrd=$cache/initramfs-$kver.cpio.gz
    stamp="$kver $(sha256sum scripts/board/init | cut -c1-16) $modules boot-config"
    if [ "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
        log "building the initramfs for $kver"
        ir=$cache/initramfs
        rm -rf "$ir"
        mkdir -p "$ir"/{bin,sbin,etc,proc,sys,dev,run,tmp,mnt,root,newroot,boot,lib/modules/"$kver"}
        cp "$kroot/boot/config-$kver" "$ir/boot/"          # as on a Debian board: `berth check` reads it
        bb=$cache/busybox-arm64
        pkg_unpack "$(ls "$cache"/debs/busybox-static_*_arm64.deb | tail -n 1)" "$bb"
        cp "$bb/bin/busybox" "$ir/bin/busybox"
        ln -s busybox "$ir/bin/sh"
        ln -s ../bin/busybox "$ir/sbin/modprobe"          # the kernel's request_module() runs /sbin/modprobe
        ln -s ../bin/busybox "$ir/sbin/switch_root"
        cp scripts/board/init "$ir/init" && chmod 755 "$ir/init"
        for m in $modules; do
            # --show-depends lists the module and what it needs, in load order ("builtin ..." for built-in ones)
            modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' | while read -r f; do
                rel=${f#"$kroot"}; mkdir -p "$ir$(dirname "$rel")"; cp -n "$f" "$ir$rel"
            done
        done
        cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$ir/lib/modules/$kver/"
        depmod -b "$ir" "$kver"
        echo "$modules" >"$ir/etc/board.modules"
        (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
        mv "$initrd.tmp" "$initrd" && echo "$stamp" >"$initrd.stamp"
    fi

}
