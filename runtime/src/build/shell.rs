//! Variable substitution in Dockerfile words, following BuildKit's shell lexer: single quotes are
//! literal, double quotes expand `$` and honour the escape character before `"`, `$` and itself,
//! the escape character outside quotes makes the next character literal, and `$NAME`, `${NAME}`,
//! `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`, `${NAME:?msg}` and
//! `${NAME?msg}` expand from the build's variables. Quotes are removed.
//!
//! `words` also splits on white space outside quotes; an unquoted expansion is split too.

use crate::error::{Error, Result};

pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Vars::get(self.as_slice(), name)
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    words: Vec<String>,
    cur: String,
    in_word: bool,
    split: bool,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    /// A character from unquoted text or an unquoted expansion: white space ends a word.
    fn add_char(&mut self, c: char) {
        if self.split && c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.cur));
                self.in_word = false;
            }
            return;
        }
        self.add_raw(c);
    }

    /// A character that is part of the word whatever it is (quoted, escaped).
    fn add_raw(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }

    fn run(&mut self) -> Result<()> {
        while let Some(c) = self.next() {
            match c {
                '\'' => {
                    self.in_word = true;
                    loop {
                        match self.next() {
                            Some('\'') => break,
                            Some(c) => self.add_raw(c),
                            None => return Err(Error::invalid("unexpected end of statement while looking for matching single-quote")),
                        }
                    }
                }
                '"' => {
                    self.in_word = true;
                    loop {
                        match self.next() {
                            Some('"') => break,
                            Some('$') => {
                                let v = self.dollar()?;
                                for ch in v.chars() {
                                    self.add_raw(ch);
                                }
                            }
                            Some(c) if c == self.escape => match self.peek() {
                                Some(n) if n == '"' || n == '$' || n == self.escape => {
                                    self.pos += 1;
                                    self.add_raw(n);
                                }
                                _ => self.add_raw(c),
                            },
                            Some(c) => self.add_raw(c),
                            None => return Err(Error::invalid("unexpected end of statement while looking for matching double-quote")),
                        }
                    }
                }
                '$' => {
                    let v = self.dollar()?;
                    for ch in v.chars() {
                        self.add_char(ch);
                    }
                }
                c if c == self.escape => match self.next() {
                    Some(n) => self.add_raw(n),
                    None => self.add_raw(c),
                },
                c => self.add_char(c),
            }
        }
        if self.in_word {
            self.words.push(std::mem::take(&mut self.cur));
        }
        Ok(())
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        // `$1` is one positional digit, as in sh.
        if let Some(c) = self.peek().filter(char::is_ascii_digit) {
            self.pos += 1;
            n.push(c);
            return n;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// After a `$`: the expansion's value.
    fn dollar(&mut self) -> Result<String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(Error::invalid("bad substitution: missing variable name in ${}"));
                }
                let colon = self.peek() == Some(':');
                if colon {
                    self.pos += 1;
                }
                match self.next() {
                    Some('}') if !colon => Ok(self.vars.get(&name).unwrap_or_default()),
                    Some(op @ ('-' | '+' | '?')) => {
                        let word = self.nested()?;
                        let v = self.vars.get(&name);
                        let set = if colon { v.as_deref().is_some_and(|s| !s.is_empty()) } else { v.is_some() };
                        match op {
                            '-' => Ok(if set { v.unwrap_or_default() } else { word }),
                            '+' => Ok(if set { word } else { String::new() }),
                            _ => {
                                if set {
                                    Ok(v.unwrap_or_default())
                                } else if word.is_empty() {
                                    Err(Error::invalid(format!("{name}: is not allowed to be unset")))
                                } else {
                                    Err(Error::invalid(format!("{name}: {word}")))
                                }
                            }
                        }
                    }
                    Some(c) => Err(Error::invalid(format!("unsupported modifier ({}{c}) in substitution", if colon { ":" } else { "" }))),
                    None => Err(Error::invalid("missing '}' in substitution")),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok(self.vars.get(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// The word of `${a:-word}` up to its closing `}`, itself expanded.
    fn nested(&mut self) -> Result<String> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(Error::invalid("missing '}' in substitution")),
                Some('}') => break,
                Some('$') => out.push_str(&self.dollar()?),
                Some('\'') => loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err(Error::invalid("unexpected end of statement while looking for matching single-quote")),
                    }
                },
                Some('"') => {}
                Some(c) if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                Some(c) => out.push(c),
            }
        }
        Ok(out)
    }
}

fn lex(s: &str, vars: &dyn Vars, escape: char, split: bool) -> Result<Vec<String>> {
    let mut l = Lexer { chars: s.chars().collect(), pos: 0, escape, vars, words: Vec::new(), cur: String::new(), in_word: false, split };
    l.run()?;
    Ok(l.words)
}

/// One word: quotes removed, variables expanded, white space kept.
pub fn word(s: &str, vars: &dyn Vars, escape: char) -> Result<String> {
    Ok(lex(s, vars, escape, false)?.into_iter().next().unwrap_or_default())
}

/// Words split on white space outside quotes, each expanded.
pub fn words(s: &str, vars: &dyn Vars, escape: char) -> Result<Vec<String>> {
    lex(s, vars, escape, true)
}

/// Words split on white space outside quotes, quotes kept and nothing expanded: how `ENV a=1
/// b="c d"` is cut into pairs before each value is expanded.
pub fn raw_words(s: &str, escape: char) -> Vec<String> {
    let (mut out, mut cur, mut quote, mut in_word) = (Vec::new(), String::new(), None::<char>, false);
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                cur.push(c);
                if c == escape {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![("A".into(), "one".into()), ("E".into(), String::new()), ("S".into(), "a b".into())]
    }

    fn w(s: &str) -> String {
        word(s, &vars(), '\\').unwrap()
    }

    #[test]
    fn expansions_as_buildkit() {
        assert_eq!(w("$A"), "one");
        assert_eq!(w("${A}x"), "onex");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("${N:-dflt}"), "dflt");
        assert_eq!(w("${E:-dflt}"), "dflt");
        assert_eq!(w("${E-dflt}"), "");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${E:+alt}"), "");
        assert_eq!(w("${E+alt}"), "alt");
        assert_eq!(w("${N:-$A-x}"), "one-x");
        assert_eq!(w("${N:-${A}}"), "one");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$1x"), "x");
        assert_eq!(word("${N:?must be set}", &vars(), '\\').unwrap_err().to_string(), "N: must be set");
        assert_eq!(word("${E:?}", &vars(), '\\').unwrap_err().to_string(), "E: is not allowed to be unset");
        assert_eq!(w("${E?}"), "");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "one b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"a\\\"b\\$A\\n\""), "a\"b$A\\n");
        assert_eq!(w("two words"), "two words");
        assert_eq!(word("`$A", &vars(), '`').unwrap(), "$A");
        assert!(word("'open", &vars(), '\\').is_err());
        assert!(word("${A", &vars(), '\\').is_err());
    }

    #[test]
    fn word_splitting() {
        let v = vars();
        assert_eq!(words("a  \"b c\" 'd e'", &v, '\\').unwrap(), ["a", "b c", "d e"]);
        assert_eq!(words("$S \"$S\"", &v, '\\').unwrap(), ["a", "b", "a b"]);
        assert_eq!(words("x\\ y z", &v, '\\').unwrap(), ["x y", "z"]);
        assert_eq!(words("\"\"", &v, '\\').unwrap(), [""]);
        assert_eq!(raw_words("a=1 b=\"c d\" 'e f'=g", '\\'), ["a=1", "b=\"c d\"", "'e f'=g"]);
    }
}
