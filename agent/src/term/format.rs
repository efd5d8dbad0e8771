//! `--format`: `table` (default), `json` (one object per line), or a Go text/template (see
//! `template.rs`): `{{.ID}}\t{{.Names}}`, `table {{.ID}}\t{{.Image}}` (a header row and aligned
//! columns, as the docker CLI prints them), `{{json .Config}}`, `{{range .Mounts}}...{{end}}`.

use serde_json::Value;

use super::template::{Missing, Template};
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
            Some(t) if t.contains("{{") || t.starts_with("table ") => Ok(Format::Template(t.to_string())),
            Some(t) => Err(op_err(format!("unsupported --format {t:?}: use \"json\", \"table\" or a {{{{.Field}}}} template"))),
        }
    }
}

fn compile(t: &str, missing: Missing) -> Result<Template, CliError> {
    Template::parse(t, missing).map_err(|e| op_err(e.0))
}

/// `v` as one line of JSON (`--format json`). Through serde_json's writer into a buffer, not
/// `Value`'s `Display`, which brings its own copy of the writer and of a pretty-printing one.
pub fn json_line(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// One value through a template as Docker's typed contexts run it (`ps`, `images`, `version`,
/// `info`, `events`, `stats`): a field the value lacks is an error, never `<no value>`.
pub fn render(t: &str, v: &Value) -> Result<String, CliError> {
    compile(t, Missing::Error)?.execute(v).map_err(|e| op_err(e.0))
}

/// `inspect`'s way: Docker falls back to the raw JSON map, run with missingkey=error.
pub fn render_map(t: &str, v: &Value) -> Result<String, CliError> {
    compile(t, Missing::MapError)?.execute(v).map_err(|e| op_err(e.0))
}

/// A listing through a template: one line per row; with `table`, the header row from `titles`
/// (field name → column title, as Docker names them) and columns aligned as its tabwriter does.
pub fn render_rows(t: &str, titles: &Value, rows: &[Value]) -> Result<String, CliError> {
    compile(t, Missing::Error)?.render_rows(titles, rows).map_err(|e| op_err(e.0))
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
        assert_eq!(render("{{.Config.Env}}", &v).unwrap(), "<nil>");
        assert!(render_map("{{.Nope}}", &v).is_err());
        assert!(render("{{.Nope}}", &v).is_err());
        assert!(render("{{range .X}}", &v).is_err());
        assert!(render("{{.Id", &v).is_err());
        assert!(matches!(Format::parse(Some("table {{.ID}}")), Ok(Format::Template(_))));
        assert!(Format::parse(Some("plain")).is_err());
    }
}
