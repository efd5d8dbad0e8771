# Preloads application images into an image's berth store at build time, so a freshly flashed
# board starts its applications with no network. Inherit it in the image recipe, or for every
# image: IMAGE_CLASSES += "berth-preload"
#
#   BERTH_PRELOAD_IMAGES = "app.tar web.tar.gz"
#       docker-save / podman-save / OCI archives (any compression berth load takes), found in
#       BERTH_PRELOAD_DIR unless given as absolute paths; loaded with berth-native into
#       ${BERTH_PRELOAD_ROOT} of the root file system.
#   BERTH_PRELOAD_RUN = "app web"
#   BERTH_PRELOAD_RUN[app] = "--restart always -p 8080:80 app:1"
#       containers to start at boot: each name becomes the line
#       "-d --name NAME <flag value>" of /etc/berth/preload-run.conf, which the agent reads.

BERTH_PRELOAD_IMAGES ??= ""
BERTH_PRELOAD_RUN ??= ""
BERTH_PRELOAD_DIR ??= "${TOPDIR}/berth-images"
BERTH_PRELOAD_ROOT ??= "${localstatedir}/lib/berth"
# The platform to pick from multi-platform archives, as Docker names it.
BERTH_PRELOAD_PLATFORM ??= "linux/${@berth_preload_arch(d)}"

def berth_preload_arch(d):
    arch = d.getVar('TARGET_ARCH')
    names = {'aarch64': 'arm64', 'x86_64': 'amd64', 'powerpc64le': 'ppc64le', 'riscv64': 'riscv64'}
    if arch in names:
        return names[arch]
    if arch.startswith('arm'):
        return 'arm'
    if arch in ('i386', 'i486', 'i586', 'i686'):
        return '386'
    return arch

def berth_preload_files(d):
    files = []
    for name in (d.getVar('BERTH_PRELOAD_IMAGES') or '').split():
        path = name if os.path.isabs(name) else os.path.join(d.getVar('BERTH_PRELOAD_DIR'), name)
        files.append(path)
    return files

def berth_preload_checksums(d):
    # Rebuild the root file system when an archive changes.
    return ' '.join('%s:%s' % (f, os.path.exists(f)) for f in berth_preload_files(d))

def berth_preload_run_conf(d):
    lines = []
    for name in (d.getVar('BERTH_PRELOAD_RUN') or '').split():
        args = d.getVarFlag('BERTH_PRELOAD_RUN', name)
        if not args:
            bb.fatal('BERTH_PRELOAD_RUN names %s but BERTH_PRELOAD_RUN[%s] (its image and flags) is not set' % (name, name))
        lines.append('-d --name %s %s\n' % (name, ' '.join(args.split())))
    if not lines:
        return ''
    return ('# Containers berth starts at boot: one line of "berth run" arguments each.\n'
            '# Written by berth-preload.bbclass from BERTH_PRELOAD_RUN.\n' + ''.join(lines))

# The file's text, as a variable: task signatures see variables but not their flags.
BERTH_PRELOAD_RUN_CONF = "${@berth_preload_run_conf(d)}"

python berth_preload() {
    import subprocess

    rootfs = d.getVar('IMAGE_ROOTFS')
    store = rootfs + d.getVar('BERTH_PRELOAD_ROOT')
    berth = os.path.join(d.getVar('STAGING_BINDIR_NATIVE'), 'berth')
    for archive in berth_preload_files(d):
        if not os.path.isfile(archive):
            bb.fatal('BERTH_PRELOAD_IMAGES: %s not found (relative names are looked up in BERTH_PRELOAD_DIR)' % archive)
        cmd = [berth, '--root', store, 'load', '-q', '-i', archive, '--platform', d.getVar('BERTH_PRELOAD_PLATFORM')]
        bb.note('berth-preload: %s' % ' '.join(cmd))
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if result.returncode != 0:
            bb.fatal('berth-preload: loading %s failed:\n%s' % (archive, result.stdout))

    conf = d.getVar('BERTH_PRELOAD_RUN_CONF')
    if conf:
        path = os.path.join(rootfs + d.getVar('sysconfdir'), 'berth', 'preload-run.conf')
        bb.utils.mkdirhier(os.path.dirname(path))
        with open(path, 'w') as f:
            f.write(conf)
}
berth_preload[doc] = "Loads BERTH_PRELOAD_IMAGES into the root file system's berth store and writes preload-run.conf"

ROOTFS_POSTPROCESS_COMMAND += "berth_preload"
do_rootfs[depends] += "${@'berth-native:do_populate_sysroot' if d.getVar('BERTH_PRELOAD_IMAGES') else ''}"
do_rootfs[file-checksums] += "${@berth_preload_checksums(d)}"
