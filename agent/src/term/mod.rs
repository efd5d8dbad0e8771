//! What the CLI and the fleet tool print: tables, sizes and times, and `--format` templates.

pub mod format;
pub mod output;
