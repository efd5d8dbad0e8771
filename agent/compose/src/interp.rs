//! `${VAR}` interpolation as Compose does it, on every value of the file (keys are left alone):
//! `$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}` (unset or empty / unset),
//! `${VAR:?err}` / `${VAR?err}` (an error), `${VAR:+alt}` / `${VAR+alt}` (alternative when set),
//! `$$` for a literal `$`. Defaults and alternatives may themselves hold `${...}`.

use crate::yaml::{Node, Value};

/// Where variables come from: the shell's environment first, then `.env`/`--env-file`.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0].is_ascii_alphabetic() || b[0] == b'_') {
        return 0;
    }
    b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
}

/// The byte index of the `}` closing a `${` whose body starts at `s[0]`, nested braces counted.
fn closing(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Interpolates one string. Unset variables without a default become "" and are named in
/// `unset` (Compose warns about each).
pub fn interpolate(s: &str, env: &dyn Lookup, unset: &mut Vec<String>) -> Result<String, String> {
    interpolate_depth(s, env, unset, 0)
}

fn interpolate_depth(s: &str, env: &dyn Lookup, unset: &mut Vec<String>, depth: usize) -> Result<String, String> {
    if depth > 16 {
        return Err(format!("interpolation nested too deeply in {s:?}"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body_and_more) = after.strip_prefix('{') {
            let end = closing(body_and_more).ok_or_else(|| format!("invalid interpolation format in {s:?}: a \"${{\" is not closed"))?;
            let body = &body_and_more[..end];
            out.push_str(&braced(body, s, env, unset, depth)?);
            rest = &body_and_more[end + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                // A `$` before something that cannot be a name stays as written.
                out.push('$');
                rest = after;
            } else {
                let name = &after[..n];
                match env.get(name) {
                    Some(v) => out.push_str(&v),
                    None => unset.push(name.to_string()),
                }
                rest = &after[n..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn braced(body: &str, whole: &str, env: &dyn Lookup, unset: &mut Vec<String>, depth: usize) -> Result<String, String> {
    let n = name_len(body);
    if n == 0 {
        return Err(format!("invalid interpolation format in {whole:?}: \"${{{body}}}\" does not start with a variable name"));
    }
    let name = &body[..n];
    let op = &body[n..];
    let value = env.get(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let arg = |skip: usize, unset: &mut Vec<String>| interpolate_depth(&op[skip..], env, unset, depth + 1);
    let required = |msg: String| {
        if msg.is_empty() {
            format!("required variable {name} is missing a value")
        } else {
            format!("required variable {name} is missing a value: {msg}")
        }
    };
    Ok(match op.as_bytes() {
        [] => match value {
            Some(v) => v,
            None => {
                unset.push(name.to_string());
                String::new()
            }
        },
        [b':', b'-', ..] => {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                arg(2, unset)?
            }
        }
        [b'-', ..] => match value {
            Some(v) => v,
            None => arg(1, unset)?,
        },
        [b':', b'?', ..] => {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                return Err(required(arg(2, unset)?));
            }
        }
        [b'?', ..] => match value {
            Some(v) => v,
            None => return Err(required(arg(1, unset)?)),
        },
        [b':', b'+', ..] => {
            if set_nonempty {
                arg(2, unset)?
            } else {
                String::new()
            }
        }
        [b'+', ..] => {
            if value.is_some() {
                arg(1, unset)?
            } else {
                String::new()
            }
        }
        _ => return Err(format!("invalid interpolation format in {whole:?}: \"${{{body}}}\"")),
    })
}

/// Interpolates every scalar value of a tree in place (keys stay as written, as in Compose).
/// Errors carry the line of the value.
pub fn interpolate_tree(node: &mut Node, env: &dyn Lookup, unset: &mut Vec<String>) -> Result<(), (crate::yaml::Mark, String)> {
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        let mark = n.mark;
        match &mut n.value {
            Value::Scalar { text, .. } => {
                if text.contains('$') {
                    *text = interpolate(text, env, unset).map_err(|e| (mark, e))?;
                }
            }
            Value::Seq(v) => todo.extend(v.iter_mut()),
            Value::Map(m) => todo.extend(m.iter_mut().map(|(_, v)| v)),
            Value::Null => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, String> {
        let mut unset = Vec::new();
        interpolate(s, &env, &mut unset)
    }

    #[test]
    fn forms() {
        for (src, want) in [
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y$A.z", "xalphayalpha.z"),
            ("$$A", "$A"),
            ("$${A}", "${A}"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${A:-d}", "alpha"),
            ("${A:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${A}}", "alpha"),
            ("${UNSET:-${UNSET2:-deep}}", "deep"),
            ("${UNSET:-a:b-c}", "a:b-c"),
            ("${PORT}:80", "8080:80"),
            ("price $5", "price $5"),
            ("end$", "end$"),
            ("${A?never}", "alpha"),
        ] {
            assert_eq!(i(src).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn unset_is_named() {
        let mut unset = Vec::new();
        assert_eq!(interpolate("${NOPE}-$NOPE2", &env, &mut unset).unwrap(), "-");
        assert_eq!(unset, ["NOPE", "NOPE2"]);
    }

    #[test]
    fn errors() {
        assert_eq!(i("${UNSET:?set it}").unwrap_err(), "required variable UNSET is missing a value: set it");
        assert_eq!(i("${EMPTY:?}").unwrap_err(), "required variable EMPTY is missing a value");
        assert_eq!(i("${UNSET?}").unwrap_err(), "required variable UNSET is missing a value");
        assert!(i("${EMPTY?x}").is_ok());
        assert!(i("${A").unwrap_err().contains("not closed"));
        assert!(i("${}").is_err());
        assert!(i("${1A}").is_err());
        assert!(i("${A!x}").is_err());
    }

    #[test]
    fn tree_values_not_keys() {
        let mut n = crate::yaml::parse("$A: ${A}\nl: [\"$PORT\", x]\nr: ${NOPE:?needed}\n").unwrap();
        let mut unset = Vec::new();
        let (mark, e) = interpolate_tree(&mut n, &env, &mut unset).unwrap_err();
        assert_eq!(mark.line, 3);
        assert!(e.contains("NOPE"));
        let mut n = crate::yaml::parse("$A: ${A}\nl: [\"$PORT\", x]\n").unwrap();
        interpolate_tree(&mut n, &env, &mut unset).unwrap();
        let Value::Map(m) = &n.value else { panic!() };
        assert_eq!(m[0].0.text, "$A");
        assert_eq!(m[0].1.value, Value::Scalar { text: "alpha".into(), plain: true });
        let Value::Seq(l) = &n.get("l").unwrap().value else { panic!() };
        assert_eq!(l[0].value, Value::Scalar { text: "8080".into(), plain: false });
    }
}
