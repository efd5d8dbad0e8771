fn main() {
    // A container's monitor re-executing itself (runtime/src/container/spawn.rs): nothing of the
    // agent or the CLI runs.
    if std::env::args_os().nth(1).is_some_and(|a| a == berth_runtime::container::spawn::MONITOR_ARG) {
        let rest: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        berth_runtime::container::spawn::monitor_main(&rest);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(berth::cli::main(&args));
}
