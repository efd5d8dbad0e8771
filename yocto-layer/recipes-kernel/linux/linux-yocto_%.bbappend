# berth's kernel options, when the distro asks for berth: DISTRO_FEATURES:append = " berth".
# A conditional require leaves every other build's signatures as they were.
require ${@bb.utils.contains('DISTRO_FEATURES', 'berth', 'linux-yocto-berth.inc', '', d)}
