//! `berth board validate FILE...`: checks board profiles (`board-configs/*.toml`) as the agent loads
//! them: known keys only, device paths under /dev, sizes and target consistent.

use super::{command, group, CliError, Command, Ctx};
use berth_proto::args::{Cmd, Matches};

pub const VALIDATE: Cmd = Cmd {
    path: "berth board validate",
    usage: "FILE [FILE...]",
    about: "Check board profiles; prints each file's board name, exits 1 if any is invalid",
    opts: &[],
    min_args: 1,
    max_args: None,
    stop_at_positional: false,
    subcommands: &[],
};

pub const GROUP: Cmd = group("berth board", "Manage board profiles");
pub const SUBCOMMANDS: &[Command] = &[command("validate", &VALIDATE, validate)];

pub fn validate(_: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut bad = 0;
    for f in m.args() {
        match berth_device::board::Board::load(std::path::Path::new(f)) {
            Ok(b) => println!("{f}: ok ({}, {}, {} devices)", b.name, b.target, b.devices.len()),
            Err(e) => {
                eprintln!("Error: {e}");
                bad += 1;
            }
        }
    }
    Ok(if bad > 0 { 1 } else { 0 })
}
