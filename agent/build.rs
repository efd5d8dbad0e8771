//! Records the build time (SOURCE_DATE_EPOCH when set, as Yocto and reproducible builds do):
//! the agent's floor for certificate date checks on boards that boot without a clock.
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    println!("cargo:rustc-env=BERTH_BUILD_TIME={t}");
}
