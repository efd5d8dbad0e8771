//! `berth check` and the Yocto layer: the kernel fragment of meta-berth lists exactly the options
//! `berth check` knows, a config missing a required option fails the check and names it, and
//! the check runs on this machine. No root needed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use berth_tests::{assert_one_error, berth_bin, make_temp_dir, run, s, tool, workspace_root, Stdin};

fn berth(args: &[&str]) -> Output {
    run(Command::new(berth_bin()).args(args), Stdin::Null)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(args: &[&str], o: &Output) -> String {
    format!(
        "berth {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `berth check --list`, in order.
fn listed() -> Vec<String> {
    let o = berth(&["check", "--list"]);
    assert!(o.status.success(), "{}", describe(&["check", "--list"], &o));
    let names: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert!(names.len() >= 20, "suspiciously short list: {names:?}");
    for n in &names {
        assert!(n.starts_with("CONFIG_") && !n.contains(char::is_whitespace), "not a CONFIG_ name: {n:?}");
    }
    names
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);
impl Scratch {
    fn new() -> Scratch {
        Scratch(make_temp_dir("berth-yocto"))
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A kernel config with every listed option `=y`, except `edits` (name, replacement line).
fn config_text(names: &[String], edits: &[(&str, &str)]) -> String {
    let mut text = String::from("#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_LOCALVERSION=\"\"\n");
    for n in names {
        match edits.iter().find(|(e, _)| e == n) {
            Some((_, line)) => text.push_str(line),
            None => text.push_str(&format!("{n}=y")),
        }
        text.push('\n');
    }
    text
}

/// The item lines (`CONFIG_X: status  (...)`) of `berth check`'s text output, by name.
fn item_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once(": ").map(|(n, rest)| (n.to_string(), rest.to_string())))
        .collect()
}

#[test]
fn check_list_equals_the_kernel_fragment() {
    let cfg = workspace_root().join("yocto-layer/recipes-kernel/linux/files/berth.cfg");
    let text = fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("read {}: {e}", cfg.display()));
    let fragment: BTreeSet<String> =
        text.lines().filter(|l| l.starts_with("CONFIG_")).map(|l| l.split('=').next().unwrap_or(l).trim().to_string()).collect();
    let names = listed();
    let list: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(list.len(), names.len(), "berth check --list repeats a name: {names:?}");
    let only_list: Vec<&String> = list.difference(&fragment).collect();
    let only_fragment: Vec<&String> = fragment.difference(&list).collect();
    assert!(
        only_list.is_empty() && only_fragment.is_empty(),
        "berth check --list (runtime/src/kernel.rs) and {} differ:\n  only in berth check --list: {only_list:?}\n  only in berth.cfg: {only_fragment:?}",
        cfg.display()
    );
    // Every option the fragment sets is set on, not off.
    for l in text.lines().filter(|l| l.starts_with("CONFIG_")) {
        assert!(l.ends_with("=y") || l.ends_with("=m"), "berth.cfg line {l:?} is not =y or =m");
    }
}

#[test]
fn kernel_config_missing_overlayfs_fails_and_names_it() {
    let names = listed();
    let dir = Scratch::new();

    // Everything there: exit 0, every item enabled.
    let full = dir.write("full.config", &config_text(&names, &[]));
    let args = ["check", "--kernel-config", s(&full)];
    let o = berth(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
    let items = item_lines(&stdout(&o));
    assert_eq!(items.len(), names.len(), "one line per item:\n{}", stdout(&o));
    assert!(items.iter().all(|(_, rest)| rest.starts_with("enabled")), "{}", stdout(&o));

    // Overlayfs off: exit 1, its line says missing, the summary names it.
    let text = config_text(&names, &[("CONFIG_OVERLAY_FS", "# CONFIG_OVERLAY_FS is not set")]);
    let no_overlay = dir.write("no-overlay.config", &text);
    let args = ["check", "--kernel-config", s(&no_overlay)];
    let o = berth(&args);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&args, &o));
    let line = out.lines().find(|l| l.starts_with("CONFIG_OVERLAY_FS:")).unwrap_or_else(|| panic!("no CONFIG_OVERLAY_FS line:\n{out}"));
    assert!(line.starts_with("CONFIG_OVERLAY_FS: missing") && line.contains("required"), "{line}");
    assert!(out.lines().any(|l| l.starts_with("Missing required") && l.contains("CONFIG_OVERLAY_FS")), "summary:\n{out}");
    let others_enabled = item_lines(&out).iter().filter(|(n, _)| n != "CONFIG_OVERLAY_FS").all(|(_, r)| r.starts_with("enabled"));
    assert!(others_enabled, "{out}");

    // Absent altogether (its dependencies off) is missing too; so is the gzip'd file's.
    let text = config_text(&names, &[("CONFIG_OVERLAY_FS", "")]);
    let absent = dir.write("absent.config", &text);
    tool("gzip", &["-k", s(&absent)]);
    for f in [absent.clone(), PathBuf::from(format!("{}.gz", s(&absent)))] {
        let args = ["check", "--kernel-config", s(&f)];
        let o = berth(&args);
        assert_eq!(o.status.code(), Some(1), "{}", describe(&args, &o));
        assert!(stdout(&o).contains("CONFIG_OVERLAY_FS: missing"), "{}", describe(&args, &o));
    }

    // A missing optional option, or one built as a module, does not fail the check.
    let text = config_text(&names, &[("CONFIG_VETH", "# CONFIG_VETH is not set"), ("CONFIG_OVERLAY_FS", "CONFIG_OVERLAY_FS=m")]);
    let optional = dir.write("optional.config", &text);
    let args = ["check", "--kernel-config", s(&optional)];
    let o = berth(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
    assert!(stdout(&o).contains("CONFIG_VETH: missing  (optional"), "{}", stdout(&o));
    // Without it bridge networks are unavailable, and the summary says which options they lack.
    assert!(
        stdout(&o).contains("\nBridge networks: unavailable without CONFIG_VETH (containers can still run with --network host or none; start the agent with --default-network host).\n"),
        "{}",
        stdout(&o)
    );
    let all = dir.write("all.config", &config_text(&names, &[]));
    let args = ["check", "--kernel-config", s(&all)];
    let o = berth(&args);
    assert!(stdout(&o).contains("\nBridge networks: kernel options present.\n"), "{}", describe(&args, &o));

    // JSON: one object per item, the same verdicts.
    let args = ["check", "--kernel-config", s(&no_overlay), "--format", "json"];
    let o = berth(&args);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&args, &o));
    let objs: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert_eq!(objs.len(), names.len());
    let overlay = objs.iter().find(|v| v["Name"] == "CONFIG_OVERLAY_FS").expect("CONFIG_OVERLAY_FS object");
    assert_eq!(overlay["Status"], "missing");
    assert_eq!(overlay["Required"], true);
    assert_eq!(overlay["Config"], "n");
    assert!(objs.iter().filter(|v| v["Name"] != "CONFIG_OVERLAY_FS").all(|v| v["Status"] == "enabled"));
}

#[test]
fn kernel_config_errors_are_one_line() {
    let dir = Scratch::new();
    let nothing = dir.0.join("no-such.config");
    let not_config = dir.write("notes.txt", "hello\n");
    for (f, words) in [(&nothing, &["no-such.config"][..]), (&not_config, &["not a kernel config"][..])] {
        let args = ["check", "--kernel-config", s(f)];
        let o = berth(&args);
        assert_eq!(o.status.code(), Some(1), "{}", describe(&args, &o));
        assert_one_error(&String::from_utf8_lossy(&o.stderr), words);
    }
    let o = berth(&["check", "--format", "{{.Name}}"]);
    assert_eq!(o.status.code(), Some(1));
    let o = berth(&["check", "extra-argument"]);
    assert_eq!(o.status.code(), Some(125), "usage error");
}

#[test]
fn check_runs_on_this_machine() {
    let names = listed();
    let o = berth(&["check"]);
    let out = stdout(&o);
    // Shown with --nocapture: what this machine has (a cgroup v1 hybrid host here).
    println!("{out}");
    let code = o.status.code();
    assert!(matches!(code, Some(0) | Some(1)), "{}", describe(&["check"], &o));
    assert!(out.lines().next().is_some_and(|l| l.starts_with("Kernel: ")), "first line names the kernel:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("Cgroups: ")), "a line describes the cgroup hierarchy:\n{out}");
    let items = item_lines(&out);
    for n in &names {
        let lines: Vec<&(String, String)> = items.iter().filter(|(name, _)| name == n).collect();
        assert_eq!(lines.len(), 1, "one line for {n}:\n{out}");
        let rest = &lines[0].1;
        assert!(
            ["enabled  (", "missing  (", "unknown  ("].iter().any(|p| rest.starts_with(p)),
            "{n}: status is enabled, missing or unknown: {rest:?}"
        );
    }
    assert_eq!(items.len(), names.len(), "no other item lines:\n{out}");
    let required_missing = items.iter().any(|(_, r)| r.starts_with("missing  (required"));
    assert_eq!(code == Some(1), required_missing, "exit 1 exactly when a required option is missing:\n{out}");
    if Path::new("/proc/config.gz").exists() {
        assert!(out.contains("config from /proc/config.gz"), "{out}");
        assert!(!items.iter().any(|(_, r)| r.starts_with("unknown")), "with a config nothing is unknown:\n{out}");
    }

    let o = berth(&["check", "--format", "json"]);
    assert_eq!(o.status.code(), code, "same verdict in JSON");
    let objs: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert_eq!(objs.len(), names.len());
}
