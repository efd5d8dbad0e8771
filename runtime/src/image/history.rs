//! `image history`: the config's `history` entries, newest first, each with the size of the
//! layer it made (entries marked `empty_layer` made none), as `docker history` lists them.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The image ID on the newest row; the others are `<missing>`, as for any pulled image.
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

/// Rows for image `id` with config `config` whose layers have these uncompressed sizes.
pub fn history(id: &Digest, config: &[u8], layer_sizes: &[u64]) -> Result<Vec<HistoryRow>> {
    let v: Value = serde_json::from_slice(config).map_err(|e| Error::invalid(format!("config of image {id}: malformed JSON: {e}")))?;
    let entries = v.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut sizes = layer_sizes.iter();
    let mut rows = Vec::new();
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    for e in &entries {
        let empty = e.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().copied().unwrap_or(0) };
        rows.push(HistoryRow {
            id: None,
            created: s(e, "created"),
            created_by: s(e, "created_by").unwrap_or_default(),
            size,
            comment: s(e, "comment").unwrap_or_default(),
        });
    }
    // Layers no history entry accounts for (configs written by hand, or with no history).
    for size in sizes {
        rows.push(HistoryRow { id: None, created: s(&v, "created"), created_by: String::new(), size: *size, comment: String::new() });
    }
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first.id = Some(id.clone());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_go_to_entries_that_made_layers() {
        let cfg = br#"{"created":"2024-01-02T00:00:00Z","history":[
            {"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:abc in / "},
            {"created":"2024-01-01T00:00:01Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true},
            {"created":"2024-01-02T00:00:00Z","created_by":"RUN apk add curl","comment":"buildkit.dockerfile.v0"}]}"#;
        let id = Digest::of(cfg);
        let rows = history(&id, cfg, &[100, 200]).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].id.as_ref(), rows[0].size, rows[0].comment.as_str()), (Some(&id), 200, "buildkit.dockerfile.v0"));
        assert_eq!((rows[1].id.as_ref(), rows[1].size), (None, 0));
        assert_eq!(rows[2].size, 100);
        let rows = history(&id, br#"{"created":"2024-01-02T00:00:00Z"}"#, &[7]).unwrap();
        assert_eq!((rows.len(), rows[0].size, rows[0].id.as_ref()), (1, 7, Some(&id)));
    }
}
