//! An ordered value tree for output: printed as YAML the way `docker compose config` prints it
//! (block style, two-space indent, sequences indented under their key, strings quoted only when
//! they would read back as something else), and as JSON for the config hash.

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<V>),
    Map(Vec<(String, V)>),
}

impl V {
    pub fn s(s: impl Into<String>) -> V {
        V::Str(s.into())
    }

    pub fn strs<S: AsRef<str>>(items: &[S]) -> V {
        V::Seq(items.iter().map(|x| V::s(x.as_ref())).collect())
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            V::Null => J::Null,
            V::Bool(b) => J::Bool(*b),
            V::Int(i) => J::from(*i),
            V::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            V::Str(s) => J::String(s.clone()),
            V::Seq(v) => J::Array(v.iter().map(V::to_json).collect()),
            V::Map(m) => {
                let mut o = serde_json::Map::new();
                for (k, v) in m {
                    o.insert(k.clone(), v.to_json());
                }
                J::Object(o)
            }
        }
    }

    /// The YAML text of a document whose root is this value.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            V::Map(m) if !m.is_empty() => write_map(&mut out, m, 0),
            V::Seq(s) if !s.is_empty() => write_seq(&mut out, s, 0),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
        out
    }
}

/// Map keys/strings that a YAML reader would take as something other than this string.
fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | ".inf" | "-.inf" | ".nan") {
        return true;
    }
    if s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o") {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) && !(first == '-' && s.len() > 1 && !s.starts_with("- ")) {
        return true;
    }
    s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(|c| c.is_control())
}

fn quoted(s: &str) -> String {
    // JSON's string escapes are valid YAML double-quoted escapes.
    serde_json::Value::String(s.to_string()).to_string()
}

fn scalar_text(s: &str) -> String {
    if needs_quotes(s) {
        quoted(s)
    } else {
        s.to_string()
    }
}

fn inline(v: &V) -> String {
    match v {
        V::Null => "null".into(),
        V::Bool(b) => b.to_string(),
        V::Int(i) => i.to_string(),
        V::Float(f) => {
            let s = f.to_string();
            if s.contains('.') || s.contains('e') || !f.is_finite() {
                s
            } else {
                format!("{s}.0")
            }
        }
        V::Str(s) => scalar_text(s),
        V::Seq(_) => "[]".into(),
        V::Map(_) => "{}".into(),
    }
}

fn is_block(v: &V) -> bool {
    matches!(v, V::Seq(s) if !s.is_empty()) || matches!(v, V::Map(m) if !m.is_empty())
}

fn write_map(out: &mut String, m: &[(String, V)], indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&pad);
        out.push_str(&scalar_text(k));
        out.push(':');
        match v {
            V::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2);
            }
            V::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[V], indent: usize) {
    let pad = " ".repeat(indent);
    for v in items {
        out.push_str(&pad);
        out.push_str("- ");
        match v {
            V::Map(inner) if !inner.is_empty() => {
                // The first key shares the dash's line; the rest line up under it.
                let mut first = String::new();
                write_map(&mut first, inner, indent + 2);
                out.push_str(first.trim_start());
            }
            V::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other if !is_block(other) => {
                out.push_str(&inline(other));
                out.push('\n');
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_shape() {
        let v = V::Map(vec![
            ("name".into(), V::s("demo")),
            (
                "services".into(),
                V::Map(vec![(
                    "web".into(),
                    V::Map(vec![
                        ("command".into(), V::strs(&["sh", "-c", "echo: hi"])),
                        ("environment".into(), V::Map(vec![("A".into(), V::s("1")), ("B".into(), V::Null)])),
                        ("ports".into(), V::Seq(vec![V::Map(vec![("target".into(), V::Int(80)), ("published".into(), V::s("8080"))])])),
                        ("empty".into(), V::Map(vec![])),
                        ("cpus".into(), V::Float(1.0)),
                    ]),
                )]),
            ),
        ]);
        let want = "name: demo
services:
  web:
    command:
      - sh
      - -c
      - \"echo: hi\"
    environment:
      A: \"1\"
      B: null
    ports:
      - target: 80
        published: \"8080\"
    empty: {}
    cpus: 1.0
";
        assert_eq!(v.to_yaml(), want);
    }

    #[test]
    fn quoting_reads_back() {
        for s in
            ["", " x", "true", "no", "1", "1.5", "-", "- x", "a: b", "#c", "*x", "&a", "x #y", "null", "~", "line\nbreak", "0x10", "-1"]
        {
            let text = V::Map(vec![("k".into(), V::s(s))]).to_yaml();
            let back = crate::yaml::parse(&text).unwrap();
            assert_eq!(back.get("k").unwrap().value, crate::yaml::Value::Scalar { text: s.into(), plain: false }, "{s:?} -> {text}");
        }
        for s in ["-d", "abc", "a:b", "/data:/x:ro"] {
            assert!(!needs_quotes(s), "{s}");
        }
    }
}
