//! `.env`, `--env-file` and a service's `env_file`: `KEY=VALUE` lines as Compose reads them.
//! `# comments`, blank lines and an `export ` prefix are skipped; 'single quotes' are literal;
//! "double quotes" take `\n`, `\t`, `\"`, `\\` escapes and `${VAR}`; unquoted values lose a
//! trailing ` # comment` and surrounding blanks and take `${VAR}`. A bare `KEY` takes its value
//! from the environment (and is left out when unset).

use crate::interp::{interpolate, Lookup};

/// Parses `text` (from `file`, named in errors) into ordered pairs. `env` resolves `${VAR}` and
/// bare keys; variables defined earlier in the same file are seen too.
pub fn parse(text: &str, file: &str, env: &dyn Lookup) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let at = || format!("{file} line {}", no + 1);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim_start())),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{}: invalid variable name {key:?}", at()));
        }
        let lookup = |name: &str| out.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| env.get(name));
        let value = match value {
            None => match lookup(key) {
                Some(v) => v,
                None => continue,
            },
            Some(v) => value_of(v, &lookup).map_err(|e| format!("{}: {e}", at()))?,
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn value_of(v: &str, env: &dyn Lookup) -> Result<String, String> {
    let mut unset = Vec::new();
    if let Some(body) = v.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated single quote")?;
        return Ok(body[..end].to_string());
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut s = String::new();
        let mut chars = body.chars();
        loop {
            match chars.next() {
                None => return Err("unterminated double quote".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some(c @ ('"' | '\\' | '$')) => {
                        if c == '$' {
                            s.push('$');
                        }
                        s.push(c)
                    }
                    Some(c) => {
                        s.push('\\');
                        s.push(c)
                    }
                    None => return Err("unterminated double quote".into()),
                },
                Some(c) => s.push(c),
            }
        }
        return interpolate(&s, env, &mut unset);
    }
    let v = match v.find(" #") {
        Some(i) => &v[..i],
        None => v,
    };
    interpolate(v.trim_end(), env, &mut unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        (n == "HOME").then(|| "/root".to_string())
    }

    #[test]
    fn lines() {
        let text = "# c\n\nA=1\nexport B = two words # note\nC='lit ${HOME}'\nD=\"q\\n${A}\\\"\"\nE=${HOME}/x\nHOME\nNOPE\nF=\nG=a#b\n";
        let got = parse(text, ".env", &env).unwrap();
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "lit ${HOME}"),
            ("D", "q\n1\""),
            ("E", "/root/x"),
            ("HOME", "/root"),
            ("F", ""),
            ("G", "a#b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("A=1\nB='x\n", "f.env", &env).unwrap_err(), "f.env line 2: unterminated single quote");
        assert!(parse("A B=1\n", "f.env", &env).unwrap_err().contains("line 1: invalid variable name"));
        assert!(parse("A=${X:?need X}\n", "f.env", &env).unwrap_err().contains("need X"));
    }
}
