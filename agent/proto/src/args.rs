//! Spec-driven argument parser with Docker CLI (spf13/pflag + cobra) semantics.
//!
//! We avoid clap to keep the static binary small; commands are described by
//! `static` [`Cmd`] tables and parsed here with the same rules users already
//! know from `docker`.

use std::fmt;

/// One option of a command. `value: None` means a boolean flag; `Some("NAME")`
/// takes a value shown as NAME in help.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// A command: `path` is the full command path shown in messages, e.g. "berth image ls".
#[derive(Debug, Clone, Copy)]
pub struct Cmd {
    pub path: &'static str,
    /// Shown after `path` in help, e.g. "[OPTIONS] IMAGE [IMAGE...]".
    pub usage: &'static str,
    pub about: &'static str,
    pub opts: &'static [Opt],
    pub min_args: usize,
    pub max_args: Option<usize>,
    /// The first positional ends option parsing (`run IMAGE CMD...`, dispatchers).
    pub stop_at_positional: bool,
    /// (name, one-line about) listed in help; may be empty.
    pub subcommands: &'static [(&'static str, &'static str)],
}

/// A command that takes options and positional arguments (no subcommands).
pub const fn cmd(
    path: &'static str,
    usage: &'static str,
    about: &'static str,
    opts: &'static [Opt],
    min: usize,
    max: Option<usize>,
) -> Cmd {
    Cmd { path, usage, about, opts, min_args: min, max_args: max, stop_at_positional: false, subcommands: &[] }
}

pub const fn opt(long: &'static str, short: Option<char>, value: Option<&'static str>, help: &'static str) -> Opt {
    Opt { long, short, value, help }
}

#[derive(Debug)]
pub enum Parsed {
    /// Full help text to print to stdout; exit 0.
    Help(String),
    Matches(Matches),
}

#[derive(Debug, Default)]
pub struct Matches {
    /// Every occurrence in order; bool flags store the normalized "true"/"false".
    occurrences: Vec<(&'static str, String)>,
    args: Vec<String>,
}

impl Matches {
    fn all<'s: 'l, 'l>(&'s self, long: &'l str) -> impl Iterator<Item = &'s str> + 'l {
        self.occurrences.iter().filter(move |(l, _)| *l == long).map(|(_, v)| v.as_str())
    }

    /// True if the bool flag was given and its last value was not false.
    pub fn flag(&self, long: &str) -> bool {
        self.value(long) == Some("true")
    }

    /// Last value given.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.all(long).last()
    }

    /// All values in order (repeatable options like -e, -v, --change).
    pub fn values(&self, long: &str) -> Vec<&str> {
        self.all(long).collect()
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn count(&self, long: &str) -> usize {
        self.all(long).count()
    }
}

#[derive(Debug, PartialEq)]
pub struct UsageError {
    pub msg: String,
    /// The `Cmd.path` the error belongs to.
    pub cmd: &'static str,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\nSee '{} --help'.", self.msg, self.cmd)
    }
}

impl std::error::Error for UsageError {}

/// Go's strconv.ParseBool, so `--flag=T` etc. behave exactly as in docker.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Mirrors docker/cli's NoArgs/ExactArgs/RequiresRangeArgs/RequiresMaxArgs/RequiresMinArgs.
fn check_count(cmd: &Cmd, n: usize) -> Option<String> {
    let min = cmd.min_args;
    let need = |what: &str, k: usize| {
        let noun = if k == 1 { "argument" } else { "arguments" };
        Some(format!("\"{}\" requires {what} {k} {noun}.", cmd.path))
    };
    match cmd.max_args {
        Some(0) if n > 0 => Some(format!("\"{}\" accepts no arguments.", cmd.path)),
        Some(max) if min == max && n != min => need("exactly", max),
        Some(max) if min > 0 && (n < min || n > max) => need(&format!("at least {min} and at most"), max),
        Some(max) if n > max => need("at most", max),
        _ if n < min => need("at least", min),
        _ => None,
    }
}

enum Step {
    Continue,
    Help,
}

struct Parser<'c> {
    cmd: &'c Cmd,
    m: Matches,
}

impl Parser<'_> {
    fn err(&self, msg: String) -> UsageError {
        UsageError { msg, cmd: self.cmd.path }
    }

    fn set(&mut self, o: &Opt, value: String) -> Result<(), UsageError> {
        let value = if o.value.is_some() {
            value
        } else {
            match parse_bool(&value) {
                Some(b) => b.to_string(),
                None => {
                    // pflag names the flag as "-d, --detach" when it has a shorthand.
                    let name = match o.short {
                        Some(c) => format!("-{c}, --{}", o.long),
                        None => format!("--{}", o.long),
                    };
                    return Err(self.err(format!(
                        "invalid argument {value:?} for {name:?} flag: \
                         strconv.ParseBool: parsing {value:?}: invalid syntax"
                    )));
                }
            }
        };
        self.m.occurrences.push((o.long, value));
        Ok(())
    }

    fn long(&mut self, s: &str, rest: &mut impl Iterator<Item = String>) -> Result<Step, UsageError> {
        let body = &s[2..];
        if body.starts_with('-') || body.starts_with('=') {
            return Err(self.err(format!("bad flag syntax: {s}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(o) = self.cmd.opts.iter().find(|o| o.long == name) else {
            if name == "help" {
                return Ok(Step::Help);
            }
            return Err(self.err(format!("unknown flag: --{name}")));
        };
        let value = match (inline, o.value) {
            (Some(v), _) => v,
            (None, None) => "true".to_string(),
            (None, Some(_)) => rest.next().ok_or_else(|| self.err(format!("flag needs an argument: {s}")))?,
        };
        self.set(o, value)?;
        Ok(Step::Continue)
    }

    fn shorts(&mut self, s: &str, rest: &mut impl Iterator<Item = String>) -> Result<Step, UsageError> {
        let mut cluster = &s[1..];
        while let Some(c) = cluster.chars().next() {
            let after = &cluster[c.len_utf8()..];
            cluster = after;
            let Some(o) = self.cmd.opts.iter().find(|o| o.short == Some(c)) else {
                if c == 'h' {
                    return Ok(Step::Help);
                }
                return Err(self.err(format!("unknown shorthand flag: '{c}' in {s}")));
            };
            // Same precedence as pflag's parseSingleShortArg.
            let value = if after.len() > 1 && after.starts_with('=') {
                cluster = "";
                after[1..].to_string()
            } else if o.value.is_none() {
                "true".to_string()
            } else if !after.is_empty() {
                cluster = "";
                after.to_string()
            } else {
                rest.next().ok_or_else(|| self.err(format!("flag needs an argument: '{c}' in {s}")))?
            };
            self.set(o, value)?;
        }
        Ok(Step::Continue)
    }
}

pub fn parse(cmd: &Cmd, args: &[String]) -> Result<Parsed, UsageError> {
    let mut p = Parser { cmd, m: Matches::default() };
    let mut rest = args.iter().cloned();
    while let Some(s) = rest.next() {
        let step = if s == "--" {
            p.m.args.extend(rest.by_ref());
            break;
        } else if s.len() < 2 || !s.starts_with('-') {
            p.m.args.push(s);
            if cmd.stop_at_positional {
                p.m.args.extend(rest.by_ref());
            }
            continue;
        } else if s.starts_with("--") {
            p.long(&s, &mut rest)?
        } else {
            p.shorts(&s, &mut rest)?
        };
        if let Step::Help = step {
            return Ok(Parsed::Help(help(cmd)));
        }
    }
    match check_count(cmd, p.m.args.len()) {
        Some(msg) => Err(p.err(msg)),
        None => Ok(Parsed::Matches(p.m)),
    }
}

pub fn help(cmd: &Cmd) -> String {
    help_listing(cmd, cmd.subcommands)
}

/// `cmd`'s help with `subcommands` as its list of commands (a dispatcher builds that list from
/// its own table).
pub fn help_listing(cmd: &Cmd, subcommands: &[(&str, &str)]) -> String {
    let mut out = format!("Usage:  {}", cmd.path);
    if !cmd.usage.is_empty() {
        out.push(' ');
        out.push_str(cmd.usage);
    }
    out.push_str("\n\n");
    if !cmd.about.is_empty() {
        out.push_str(cmd.about);
        out.push_str("\n\n");
    }
    if !subcommands.is_empty() {
        let w = subcommands.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 3;
        out.push_str("Commands:\n");
        for (name, about) in subcommands {
            out.push_str(&format!("  {name:w$}{about}\n"));
        }
        out.push('\n');
    }
    let mut rows: Vec<(String, &str)> = cmd
        .opts
        .iter()
        .map(|o| {
            let short = o.short.map_or("    ".to_string(), |c| format!("-{c}, "));
            let value = o.value.map_or(String::new(), |v| format!(" {v}"));
            (format!("  {short}--{}{value}", o.long), o.help)
        })
        .collect();
    rows.push(("      --help".to_string(), "Print usage"));
    let w = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0) + 3;
    out.push_str("Options:\n");
    for (left, text) in rows {
        out.push_str(&format!("{left:w$}{text}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LS: Cmd = Cmd {
        path: "berth image ls",
        usage: "[OPTIONS] [REPOSITORY[:TAG]]",
        about: "List images",
        opts: &[
            opt("all", Some('a'), None, "Show all images"),
            opt("digests", None, None, "Show digests"),
            opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
            opt("quiet", Some('q'), None, "Only show image IDs"),
        ],
        min_args: 0,
        max_args: Some(1),
        stop_at_positional: false,
        subcommands: &[],
    };

    const RUN: Cmd = Cmd {
        path: "berth run",
        usage: "[OPTIONS] IMAGE [COMMAND] [ARG...]",
        about: "Create and run a new container from an image",
        opts: &[
            opt("detach", Some('d'), None, "Run container in background"),
            opt("interactive", Some('i'), None, "Keep STDIN open"),
            opt("tty", Some('t'), None, "Allocate a pseudo-TTY"),
            opt("env", Some('e'), Some("list"), "Set environment variables"),
            opt("hostname", Some('h'), Some("string"), "Container host name"),
            opt("name", None, Some("string"), "Assign a name to the container"),
            opt("cpu-shares", Some('c'), Some("int"), "CPU shares"),
            opt("rm", None, None, "Remove when it exits"),
        ],
        min_args: 1,
        max_args: None,
        stop_at_positional: true,
        subcommands: &[],
    };

    const RMI: Cmd = Cmd {
        path: "berth rmi",
        usage: "[OPTIONS] IMAGE [IMAGE...]",
        about: "Remove images",
        opts: &[opt("force", Some('f'), None, "Force removal")],
        min_args: 1,
        max_args: None,
        stop_at_positional: false,
        subcommands: &[],
    };

    fn sv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn ok(cmd: &Cmd, a: &[&str]) -> Matches {
        match parse(cmd, &sv(a)) {
            Ok(Parsed::Matches(m)) => m,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    fn err(cmd: &Cmd, a: &[&str]) -> String {
        match parse(cmd, &sv(a)) {
            Err(e) => e.msg,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    fn is_help(cmd: &Cmd, a: &[&str]) -> bool {
        matches!(parse(cmd, &sv(a)), Ok(Parsed::Help(h)) if h == help(cmd))
    }

    #[test]
    fn value_forms() {
        for a in [&["--name", "x", "img"][..], &["--name=x", "img"], &["-e", "x", "img"], &["-ex", "img"], &["-e=x", "img"]] {
            let m = ok(&RUN, a);
            assert_eq!(m.value("name").or(m.value("env")), Some("x"), "{a:?}");
            assert_eq!(m.args(), ["img"]);
        }
        assert_eq!(ok(&RUN, &["--name=a=b", "i"]).value("name"), Some("a=b"));
        assert_eq!(ok(&RUN, &["--name=", "i"]).value("name"), Some(""));
    }

    #[test]
    fn value_may_start_with_dash() {
        let m = ok(&RUN, &["--cpu-shares", "-1", "-e", "-x", "img"]);
        assert_eq!(m.value("cpu-shares"), Some("-1"));
        assert_eq!(m.value("env"), Some("-x"));
        assert_eq!(ok(&RUN, &["--name", "--", "i"]).value("name"), Some("--"));
    }

    #[test]
    fn bools() {
        let m = ok(&LS, &["--all", "--digests=false", "-q=true"]);
        assert!(m.flag("all") && !m.flag("digests") && m.flag("quiet"));
        assert_eq!(m.count("digests"), 1);
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(ok(&LS, &[&format!("--all={t}")]).flag("all"), "{t}");
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!ok(&LS, &[&format!("--all={f}")]).flag("all"), "{f}");
        }
        assert!(!ok(&LS, &["-a", "--all=false"]).flag("all"));
        assert!(ok(&LS, &["--all=false", "-a"]).flag("all"));
        // `--flag value` leaves the value positional.
        let m = ok(&LS, &["--all", "false"]);
        assert!(m.flag("all"));
        assert_eq!(m.args(), ["false"]);
        assert!(!ok(&LS, &[]).flag("all"));
    }

    #[test]
    fn bad_bool() {
        assert_eq!(
            err(&LS, &["--digests=maybe"]),
            r#"invalid argument "maybe" for "--digests" flag: strconv.ParseBool: parsing "maybe": invalid syntax"#
        );
        assert_eq!(
            err(&LS, &["-a=yes"]),
            r#"invalid argument "yes" for "-a, --all" flag: strconv.ParseBool: parsing "yes": invalid syntax"#
        );
        assert!(err(&LS, &["--all="]).contains(r#"parsing "": invalid syntax"#));
    }

    #[test]
    fn clusters() {
        let m = ok(&RUN, &["-dit", "img"]);
        assert!(m.flag("detach") && m.flag("interactive") && m.flag("tty"));
        let m = ok(&RUN, &["-ite", "X", "img"]);
        assert!(m.flag("interactive") && m.flag("tty"));
        assert_eq!(m.values("env"), ["X"]);
        assert_eq!(ok(&RUN, &["-iteFOO=bar", "img"]).value("env"), Some("FOO=bar"));
        assert_eq!(ok(&RUN, &["-ie=a", "img"]).value("env"), Some("a"));
        let m = ok(&LS, &["-qa"]);
        assert!(m.flag("quiet") && m.flag("all"));
    }

    #[test]
    fn repeated_values_and_count() {
        let m = ok(&RUN, &["-e", "A=1", "--env=B=2", "-eC=3", "--env", "D", "img"]);
        assert_eq!(m.values("env"), ["A=1", "B=2", "C=3", "D"]);
        assert_eq!(m.value("env"), Some("D"));
        assert_eq!(m.count("env"), 4);
        assert_eq!(m.count("name"), 0);
        assert!(m.values("name").is_empty());
    }

    #[test]
    fn unknown_long_in_lookup() {
        let m = ok(&LS, &["-a"]);
        assert!(!m.flag("nope"));
        assert_eq!(m.value("nope"), None);
        assert_eq!(m.count("nope"), 0);
    }

    #[test]
    fn double_dash_and_stdin() {
        let m = ok(&RMI, &["-f", "--", "-a", "--force", "-"]);
        assert!(m.flag("force"));
        assert_eq!(m.args(), ["-a", "--force", "-"]);
        let m = ok(&RMI, &["-", "x"]);
        assert_eq!(m.args(), ["-", "x"]);
        assert!(!m.flag("force"));
        assert_eq!(ok(&RMI, &["", "-f"]).args(), [""]);
    }

    #[test]
    fn interspersed() {
        let m = ok(&RMI, &["img", "-f", "other"]);
        assert!(m.flag("force"));
        assert_eq!(m.args(), ["img", "other"]);
    }

    #[test]
    fn stop_at_positional() {
        let m = ok(&RUN, &["-d", "--name", "web", "img", "sh", "-c", "--rm", "--", "--help"]);
        assert!(m.flag("detach") && !m.flag("rm"));
        assert_eq!(m.value("name"), Some("web"));
        assert_eq!(m.args(), ["img", "sh", "-c", "--rm", "--", "--help"]);
        assert_eq!(ok(&RUN, &["--", "-img", "-d"]).args(), ["-img", "-d"]);
    }

    #[test]
    fn help_flag() {
        assert!(is_help(&LS, &["--help"]));
        assert!(is_help(&LS, &["-h"]));
        assert!(is_help(&LS, &["-qh"]));
        assert!(is_help(&LS, &["x", "y", "z", "--help"]));
        assert!(is_help(&LS, &["--help", "--bogus"]));
        assert!(is_help(&RMI, &["--help"]));
        assert_eq!(err(&LS, &["--bogus", "--help"]), "unknown flag: --bogus");
        assert_eq!(ok(&RMI, &["--", "--help"]).args(), ["--help"]);
        // `run` defines -h as --hostname.
        assert_eq!(ok(&RUN, &["-h", "box", "img"]).value("hostname"), Some("box"));
        assert!(is_help(&RUN, &["-h", "box", "--help"]));
    }

    #[test]
    fn errors() {
        assert_eq!(err(&LS, &["--foo"]), "unknown flag: --foo");
        assert_eq!(err(&LS, &["--foo=1"]), "unknown flag: --foo");
        assert_eq!(err(&LS, &["-z"]), "unknown shorthand flag: 'z' in -z");
        assert_eq!(err(&LS, &["-qz"]), "unknown shorthand flag: 'z' in -qz");
        assert_eq!(err(&RUN, &["--name"]), "flag needs an argument: --name");
        assert_eq!(err(&RUN, &["-de"]), "flag needs an argument: 'e' in -de");
        assert_eq!(err(&LS, &["---x"]), "bad flag syntax: ---x");
        assert_eq!(err(&LS, &["--=x"]), "bad flag syntax: --=x");
        let e = parse(&LS, &sv(&["--foo"])).unwrap_err();
        assert_eq!(e.cmd, "berth image ls");
        assert_eq!(e.to_string(), "unknown flag: --foo\nSee 'berth image ls --help'.");
    }

    #[test]
    fn arg_counts() {
        for (min, max, n, want) in [
            (1, Some(1), 0, "requires exactly 1 argument."),
            (2, Some(2), 3, "requires exactly 2 arguments."),
            (1, None, 0, "requires at least 1 argument."),
            (2, None, 1, "requires at least 2 arguments."),
            (0, Some(0), 1, "accepts no arguments."),
            (0, Some(1), 2, "requires at most 1 argument."),
            (0, Some(2), 3, "requires at most 2 arguments."),
            (1, Some(2), 3, "requires at least 1 and at most 2 arguments."),
            (1, Some(2), 0, "requires at least 1 and at most 2 arguments."),
            (0, None, 0, ""),
            (0, Some(0), 0, ""),
            (1, Some(2), 2, ""),
            (2, Some(2), 2, ""),
            (0, None, 9, ""),
        ] {
            let a: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let cmd = Cmd { min_args: min, max_args: max, ..RMI };
            let got = match parse(&cmd, &a) {
                Err(e) => e.msg,
                Ok(_) => String::new(),
            };
            let want = if want.is_empty() { String::new() } else { format!("\"berth rmi\" {want}") };
            assert_eq!(got, want, "{min} {max:?} {n}");
        }
    }

    #[test]
    fn help_format() {
        let want = "Usage:  berth image ls [OPTIONS] [REPOSITORY[:TAG]]

List images

Options:
  -a, --all             Show all images
      --digests         Show digests
      --format string   Format output: \"json\" for one JSON object per line
  -q, --quiet           Only show image IDs
      --help            Print usage
";
        assert_eq!(help(&LS), want);
    }

    #[test]
    fn help_with_commands_and_narrow_opts() {
        const TOP: Cmd = Cmd {
            path: "berth",
            usage: "[OPTIONS] COMMAND",
            about: "Small container agent",
            opts: &[opt("debug", Some('D'), None, "Debug mode")],
            min_args: 0,
            max_args: None,
            stop_at_positional: true,
            subcommands: &[("image", "Manage images"), ("ps", "List containers")],
        };
        let want = "Usage:  berth [OPTIONS] COMMAND

Small container agent

Commands:
  image   Manage images
  ps      List containers

Options:
  -D, --debug   Debug mode
      --help    Print usage
";
        assert_eq!(help(&TOP), want);
        let m = ok(&TOP, &["-D", "image", "ls", "-a", "--help"]);
        assert!(m.flag("debug"));
        assert_eq!(m.args(), ["image", "ls", "-a", "--help"]);
    }
}
