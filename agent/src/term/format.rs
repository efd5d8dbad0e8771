//! `--format`: `table` (default), `json` (one object per line), or a small subset of Docker's Go
//! templates for inspect (`{{.Id}}`, `{{.Config.Cmd}}`, `{{json .Config}}`), which field engineers
//! type from habit.

use serde_json::Value;

use berth_proto::error::{op_err, CliError};

pub enum Format {
    Table,
    Json,
    Template(String),
}

impl Format {
    pub fn parse(v: Option<&str>) -> Result<Format, CliError> {
        match v {
            None | Some("") | Some("table") => Ok(Format::Table),
            Some("json") | Some("{{json .}}") => Ok(Format::Json),
            Some(t) if t.contains("{{") => Ok(Format::Template(t.to_string())),
            Some(t) => Err(op_err(format!("unsupported --format {t:?}: use \"json\", \"table\" or a {{{{.Field}}}} template"))),
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|s| !s.is_empty()).try_fold(v, |v, k| v.get(k))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// Renders `{{.A.B}}` and `{{json .A}}` actions; anything else is an error, not a guess.
pub fn render(t: &str, v: &Value) -> Result<String, CliError> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("}}").ok_or_else(|| op_err(format!("template {t:?}: unclosed action")))?;
        let action = rest[i + 2..i + j].trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        let path = path.strip_prefix('.').ok_or_else(|| op_err(format!("template {t:?}: unsupported action {action:?}")))?;
        let val = lookup(v, path).unwrap_or(&Value::Null);
        out.push_str(&if json { val.to_string() } else { plain(val) });
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates() {
        let v = json!({"Id": "sha256:ab", "Config": {"Cmd": ["sh", "-c"], "Env": null}});
        assert_eq!(render("{{.Id}}", &v).unwrap(), "sha256:ab");
        assert_eq!(render("cmd={{.Config.Cmd}}", &v).unwrap(), "cmd=[sh -c]");
        assert_eq!(render("{{json .Config.Cmd}}", &v).unwrap(), "[\"sh\",\"-c\"]");
        assert_eq!(render("{{.Config.Env}}", &v).unwrap(), "<no value>");
        assert!(render("{{range .X}}", &v).is_err());
        assert!(render("{{.Id", &v).is_err());
    }
}
