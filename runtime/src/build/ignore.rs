//! `.dockerignore` and COPY source globs, matched as moby/patternmatcher does: Go's
//! `filepath.Match` syntax (`*`, `?`, `[a-z]`, `[^a]`, `\` escapes) plus `**` for any number of
//! directories; patterns are cleaned and a leading `/` dropped; the last matching pattern wins,
//! and `!pattern` takes a path back in. A pattern that matches a parent directory matches
//! everything below it.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `*`: anything but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[...]`: ranges, negated.
    Class(Vec<(char, char)>, bool),
    /// `**` followed by more: any number of whole directories (`(.*/)?`).
    Dirs,
    /// `**` at the end: anything at all.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
    pub exclusion: bool,
    pub text: String,
}

/// Go's `filepath.Clean` on a slash path.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let j = parts.join("/");
    match (abs, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern> {
        let (exclusion, body) = match text.strip_prefix('!') {
            Some(b) => (true, b.trim()),
            None => (false, text),
        };
        let mut body = clean(body);
        if body.len() > 1 && body.starts_with('/') {
            body.remove(0);
        }
        let bad = || Error::invalid(format!("syntax error in pattern {text:?}"));
        let chars: Vec<char> = body.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() { Tok::All } else { Tok::Dirs });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' => {
                    toks.push(Tok::Lit(*chars.get(i).ok_or_else(bad)?));
                    i += 1;
                }
                '[' => {
                    let neg = matches!(chars.get(i), Some('^') | Some('!'));
                    if neg {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let mut lo = *chars.get(i).ok_or_else(bad)?;
                        i += 1;
                        if lo == ']' && !first {
                            break;
                        }
                        first = false;
                        if lo == '\\' {
                            lo = *chars.get(i).ok_or_else(bad)?;
                            i += 1;
                        }
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                            hi = chars[i + 1];
                            i += 2;
                            if hi == '\\' {
                                hi = *chars.get(i).ok_or_else(bad)?;
                                i += 1;
                            }
                        }
                        ranges.push((lo, hi));
                    }
                    toks.push(Tok::Class(ranges, neg));
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern { toks, exclusion, text: text.to_string() })
    }

    /// Whether the whole of `path` (relative, cleaned) matches.
    pub fn matches(&self, path: &str) -> bool {
        let p: Vec<char> = path.chars().collect();
        m(&self.toks, &p)
    }

    /// Matches `path` or one of its parent directories.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        let parts: Vec<&str> = path.split('/').collect();
        (1..parts.len()).any(|n| self.matches(&parts[..n].join("/")))
    }
}

fn m(t: &[Tok], s: &[char]) -> bool {
    let Some((first, rest)) = t.split_first() else { return s.is_empty() };
    match first {
        Tok::Lit(c) => s.first() == Some(c) && m(rest, &s[1..]),
        Tok::One => s.first().is_some_and(|c| *c != '/') && m(rest, &s[1..]),
        Tok::Class(r, neg) => {
            s.first().is_some_and(|c| *c != '/' && r.iter().any(|(lo, hi)| lo <= c && c <= hi) != *neg) && m(rest, &s[1..])
        }
        Tok::Star => {
            for i in 0..=s.len() {
                if m(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Tok::All => true,
        Tok::Dirs => {
            // Zero directories, or any prefix ending in `/`.
            m(rest, s) || (0..s.len()).any(|i| s[i] == '/' && m(rest, &s[i + 1..]))
        }
    }
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    pats: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut pats = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l == "!" {
                return Err(Error::invalid(".dockerignore: illegal exclusion pattern: \"!\""));
            }
            pats.push(Pattern::new(l).map_err(|e| e.context(".dockerignore"))?);
        }
        Ok(Ignore { pats })
    }

    /// Whether `rel` (relative to the context root) is left out of the context.
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let mut out = false;
        for p in &self.pats {
            if p.exclusion == out && p.matches_or_parent(&rel) {
                out = !p.exclusion;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(p: &str, s: &str) -> bool {
        Pattern::new(p).unwrap().matches(s)
    }

    #[test]
    fn go_filepath_match() {
        assert!(pm("*.go", "a.go"));
        assert!(!pm("*.go", "dir/a.go"));
        assert!(pm("a?c", "abc"));
        assert!(!pm("a?c", "a/c"));
        assert!(pm("[a-c]x", "bx"));
        assert!(!pm("[^a-c]x", "bx"));
        assert!(pm("[!a-c]x", "dx"));
        assert!(pm("\\*", "*"));
        assert!(!pm("\\*", "x"));
        assert!(pm("/abs/x", "abs/x"));
        assert!(pm("./a/../b", "b"));
        assert!(Pattern::new("[a-").is_err());
    }

    #[test]
    fn double_star() {
        assert!(pm("**/*.go", "a.go"));
        assert!(pm("**/*.go", "x/y/a.go"));
        assert!(pm("a/**/b", "a/b"));
        assert!(pm("a/**/b", "a/x/y/b"));
        assert!(!pm("a/**/b", "a/xb"));
        assert!(pm("a/**", "a/x/y"));
        assert!(pm("**", "anything/at/all"));
    }

    #[test]
    fn dockerignore_last_match_wins_and_parents_match() {
        let i = Ignore::parse("# comment\n\n*.md\n!README.md\nbuild\n/secret/*\n!secret/keep\n**/*.tmp\n").unwrap();
        assert!(i.excluded("CHANGES.md"));
        assert!(!i.excluded("README.md"));
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out/x.o"));
        assert!(i.excluded("secret/key"));
        assert!(!i.excluded("secret/keep"));
        assert!(i.excluded("a/b/c.tmp"));
        assert!(!i.excluded("src/main.rs"));
        assert!(!i.excluded("docs/x.md"), "*.md does not reach into directories");
        assert!(Ignore::parse("!\n").is_err());
    }
}
