//! The Dockerfile parser: parser directives (`escape`, `syntax`), comments, line continuations,
//! heredocs, the instruction word, its `--flags`, and JSON (exec) versus shell form. Nothing is
//! expanded here; every instruction keeps its first line's number for error messages.

use crate::error::{Error, Result};

/// Every instruction the Dockerfile reference defines.
const KNOWN: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Instructions that take heredocs (`<<EOF`).
const HEREDOC: &[&str] = &["RUN", "COPY", "ADD"];

/// An instruction's arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`: exec form, a list of strings taken as they are.
    Json(Vec<String>),
    /// Everything after the flags, continuations joined.
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// `<<"EOF"` or `<<'EOF'`: no variable expansion in the content.
    pub quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper case: `RUN`.
    pub cmd: String,
    /// `--name=value` flags before the arguments (`--name` alone: value `None`).
    pub flags: Vec<(String, Option<String>)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The logical line as written (continuations joined), for history and error messages.
    pub original: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The arguments after the flags, as written (JSON form re-joined with spaces).
    pub fn text(&self) -> String {
        match &self.args {
            Args::Json(v) => v.join(" "),
            Args::Shell(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// `Dockerfile:12: why`, as every front-end error reads.
pub fn err_at(file: &str, line: usize, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{file}:{line}: {why}"))
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?.trim();
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) || !k.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// Strips the continuation escape at the end of `line` (after trailing white space), if any.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let stripped = t.strip_suffix(escape)?;
    // An escaped escape (`\\`) at the end is a literal, not a continuation.
    let run = stripped.chars().rev().take_while(|c| *c == escape).count();
    (run % 2 == 0).then_some(stripped)
}

/// The heredoc markers in a RUN/COPY/ADD line: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`.
fn heredoc_markers(s: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 2 < b.len() + 1 {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'<' && b.get(i + 1) == Some(&b'<') && b.get(i + 2) != Some(&b'<') && (i == 0 || b[i - 1] != b'<') => {
                let mut j = i + 2;
                let strip = b.get(j) == Some(&b'-');
                if strip {
                    j += 1;
                }
                let q = b.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
                if q.is_some() {
                    j += 1;
                }
                let start = j;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j > start && (q.is_none() || b.get(j).copied() == q) {
                    out.push((s[start..j].to_string(), q.is_some(), strip));
                    i = j + usize::from(q.is_some());
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// Splits leading `--flag[=value]` words off `rest`.
fn split_flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut r = rest.trim_start();
    while let Some(f) = r.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_ascii_lowercase(), Some(v.to_string()))),
            None => flags.push((word.to_ascii_lowercase(), None)),
        }
        r = f[end..].trim_start();
    }
    (flags, r)
}

/// A JSON array of strings, or `None` (then the instruction is in shell form).
pub fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') || !t.ends_with(']') {
        return None;
    }
    serde_json::from_slice::<Vec<String>>(t.as_bytes()).ok()
}

pub fn parse(text: &str, file: &str) -> Result<Dockerfile> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Directives: only at the very top, before any blank line, comment or instruction.
    let mut seen = Vec::new();
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else { break };
        if seen.contains(&k) {
            return Err(err_at(file, i + 1, format!("only one {k} parser directive can be used")));
        }
        match k.as_str() {
            "escape" => {
                escape = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(err_at(file, i + 1, format!("invalid escape token '{v}' does not match ` or \\"))),
                }
            }
            "syntax" => syntax = Some(v),
            "check" => {}
            // Anything else is a comment, and ends the directives.
            _ => break,
        }
        seen.push(k);
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        let mut logical = String::new();
        let mut original = String::from(lines[start]);
        let mut cur = first.to_string();
        loop {
            match continued(&cur, escape) {
                Some(head) => {
                    logical.push_str(head);
                    // Comment and blank lines inside a continuation are dropped, as BuildKit does.
                    loop {
                        if i >= lines.len() {
                            cur = String::new();
                            break;
                        }
                        let l = lines[i];
                        i += 1;
                        original.push('\n');
                        original.push_str(l);
                        let t = l.trim_start();
                        if t.starts_with('#') || t.is_empty() {
                            continue;
                        }
                        cur = l.to_string();
                        break;
                    }
                    if cur.is_empty() && i >= lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let logical = logical.trim().to_string();
        let (word, rest) = logical.split_once(char::is_whitespace).map_or((logical.as_str(), ""), |(a, b)| (a, b.trim_start()));
        let cmd = word.to_ascii_uppercase();
        if !KNOWN.contains(&cmd.as_str()) {
            return Err(err_at(file, start + 1, format!("unknown instruction: {word}")));
        }
        let mut heredocs = Vec::new();
        if HEREDOC.contains(&cmd.as_str()) {
            for (name, quoted, strip) in heredoc_markers(rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    original.push('\n');
                    original.push_str(l);
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !closed {
                    return Err(err_at(file, start + 1, format!("unterminated heredoc {name}")));
                }
                heredocs.push(Heredoc { name, content, quoted });
            }
        }
        let (flags, args) = if cmd == "ONBUILD" { (Vec::new(), rest) } else { split_flags(rest) };
        let args = match json_array(args) {
            Some(v) if cmd != "ONBUILD" => Args::Json(v),
            _ => Args::Shell(args.to_string()),
        };
        out.push(Instruction { cmd, flags, args, heredocs, line: start + 1, original });
    }
    Ok(Dockerfile { escape, syntax, instructions: out })
}

/// An `ONBUILD` trigger (stored in an image config as `RUN echo hi`), parsed as one instruction.
pub fn parse_trigger(text: &str, file: &str, line: usize) -> Result<Instruction> {
    let d = parse(text, file).map_err(|e| err_at(file, line, format!("ONBUILD trigger {text:?}: {}", e.message())))?;
    let mut ins = d.instructions.into_iter().next().ok_or_else(|| err_at(file, line, "empty ONBUILD trigger"))?;
    if matches!(ins.cmd.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(err_at(file, line, format!("{} isn't allowed as an ONBUILD trigger", ins.cmd)));
    }
    ins.line = line;
    Ok(ins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse(s, "Dockerfile").unwrap()
    }

    #[test]
    fn continuations_comments_and_line_numbers() {
        let d =
            p("# syntax=docker/dockerfile:1\nFROM alpine AS b\n\n# c\nRUN echo a \\\n  # inner comment\n\n  && echo b\nrun   echo   x\n");
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        let i = &d.instructions;
        assert_eq!((i[0].cmd.as_str(), i[0].line), ("FROM", 2));
        assert_eq!(i[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(i[1].line, 5);
        assert_eq!((i[2].cmd.as_str(), i[2].line, i[2].text()), ("RUN", 9, "echo   x".into()));
    }

    #[test]
    fn escape_directive_and_literal_backslashes() {
        let d = p("# escape=`\nFROM scratch\nCOPY c:\\dir\\ `\n  d:\\x\n");
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].text(), "c:\\dir\\   d:\\x");
        assert!(parse("# escape=x\nFROM a", "Dockerfile").unwrap_err().to_string().contains("invalid escape token"));
        // After the first instruction it is only a comment.
        assert_eq!(p("FROM a\n# escape=`\nRUN a \\\nb").instructions[1].text(), "a b");
    }

    #[test]
    fn json_and_shell_forms_and_flags() {
        let d = p("FROM --platform=linux/arm64 a AS b\nCMD [\"/bin/sh\", \"-c\", \"x\"]\nCMD [broken\nCOPY --from=b --chown=1:2 [\"a b\", \"/c\"]\nRUN --network=none true\n");
        let i = &d.instructions;
        assert_eq!(i[0].flag("platform"), Some("linux/arm64"));
        assert_eq!(i[0].text(), "a AS b");
        assert_eq!(i[1].args, Args::Json(vec!["/bin/sh".into(), "-c".into(), "x".into()]));
        assert_eq!(i[2].args, Args::Shell("[broken".into()));
        assert_eq!((i[3].flag("from"), i[3].flag("chown")), (Some("b"), Some("1:2")));
        assert_eq!(i[3].args, Args::Json(vec!["a b".into(), "/c".into()]));
        assert_eq!(i[4].flag("network"), Some("none"));
    }

    #[test]
    fn heredocs() {
        let d = p("FROM a\nRUN <<EOF\nset -e\necho $X\nEOF\nCOPY <<-\"A\" <<B /dst/\n\thello\n\tA\nb\nB\nRUN echo 'no <<here'\n");
        let i = &d.instructions;
        assert_eq!(i[1].heredocs, vec![Heredoc { name: "EOF".into(), content: "set -e\necho $X\n".into(), quoted: false }]);
        assert_eq!(i[2].heredocs.len(), 2);
        assert_eq!(i[2].heredocs[0], Heredoc { name: "A".into(), content: "hello\n".into(), quoted: true });
        assert_eq!(i[2].heredocs[1].content, "b\n");
        assert_eq!((i[3].line, i[3].heredocs.len()), (11, 0));
        assert!(parse("FROM a\nRUN <<EOF\nx\n", "Dockerfile").unwrap_err().to_string().contains("unterminated heredoc EOF"));
    }

    #[test]
    fn unknown_instruction_names_the_line() {
        let e = parse("FROM a\n\nRUN x\nFOO bar\n", "Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:4: unknown instruction: FOO");
        let e = parse("FROM a\nRUN a \\\n b\nfoo", "df").unwrap_err();
        assert_eq!(e.to_string(), "df:4: unknown instruction: foo");
    }

    #[test]
    fn onbuild_trigger() {
        let t = parse_trigger("RUN echo hi", "Dockerfile", 1).unwrap();
        assert_eq!((t.cmd.as_str(), t.text()), ("RUN", "echo hi".into()));
        assert!(parse_trigger("FROM x", "Dockerfile", 1).is_err());
    }
}
