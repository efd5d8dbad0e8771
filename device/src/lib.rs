//! Device passthrough for berth containers (`--device`, device cgroup rules, udev hotplug, board
//! profiles). Filled in by the hardware-passthrough issue; nothing lives here yet.
