//! `import`: a root file system (a tarball in any compression, stdin, or a directory) becomes a
//! one-layer image, with Dockerfile-style `--change` instructions applied to its config.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::compress;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::db::ImageRecord;
use crate::image::layer;
use crate::image::platform::Platform;
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::image::tarwrite::{walk, TarOut};
use crate::timefmt;

pub enum ImportSource<'a> {
    Dir(&'a Path),
    Stream(Box<dyn Read + 'a>),
}

#[derive(Default)]
pub struct ImportOptions {
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<Platform>,
}

/// Splits on white space outside double quotes, dropping the quotes.
fn words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn exec_form(rest: &str) -> Result<Value> {
    if rest.trim_start().starts_with('[') {
        let v: Vec<String> =
            serde_json::from_slice(rest.as_bytes()).map_err(|e| Error::invalid(format!("malformed JSON array {rest:?}: {e}")))?;
        Ok(json!(v))
    } else {
        Ok(json!(["/bin/sh", "-c", rest]))
    }
}

fn pairs(rest: &str, what: &str) -> Result<Vec<(String, String)>> {
    let w = words(rest);
    if w.len() >= 2 && !w[0].contains('=') {
        return Ok(vec![(w[0].clone(), w[1..].join(" "))]);
    }
    w.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::invalid(format!("{what} needs key=value, got {kv:?}")))
        })
        .collect()
}

/// Applies one Dockerfile instruction to an image's `config` object.
pub fn apply_change(cfg: &mut Map<String, Value>, change: &str) -> Result<()> {
    let change = change.trim();
    let (ins, rest) = change.split_once(char::is_whitespace).map_or((change, ""), |(a, b)| (a, b.trim()));
    let bad = |why: &str| Error::invalid(format!("--change {change:?}: {why}"));
    if rest.is_empty() {
        return Err(bad("missing argument"));
    }
    match ins.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), exec_form(rest)?);
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), exec_form(rest)?);
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            cfg.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), json!(rest));
        }
        "ENV" => {
            let env = cfg.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
            for (k, v) in pairs(rest, "ENV")? {
                let prefix = format!("{k}=");
                list.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            let map = labels.as_object_mut().ok_or_else(|| bad("Labels is not a map"))?;
            for (k, v) in pairs(rest, "LABEL")? {
                map.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            let map = ports.as_object_mut().ok_or_else(|| bad("ExposedPorts is not a map"))?;
            for p in words(rest) {
                let p = if p.contains('/') { p } else { format!("{p}/tcp") };
                map.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let vols = cfg.entry("Volumes").or_insert_with(|| json!({}));
            let map = vols.as_object_mut().ok_or_else(|| bad("Volumes is not a map"))?;
            let list =
                if rest.starts_with('[') { serde_json::from_slice(rest.as_bytes()).map_err(|e| bad(&e.to_string()))? } else { words(rest) };
            for v in list {
                map.insert(v, json!({}));
            }
        }
        other => {
            return Err(bad(&format!(
                "unsupported instruction {other} (supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )));
        }
    }
    Ok(())
}

impl Store {
    pub fn import(&self, src: ImportSource<'_>, opts: &ImportOptions) -> Result<Digest> {
        let tag = match &opts.reference {
            Some(r) => {
                Some(Reference::parse(r)?.tagged().ok_or_else(|| Error::invalid(format!("cannot import as a digest reference: {r}")))?)
            }
            None => None,
        };
        let mut cfg = Map::new();
        for c in &opts.changes {
            apply_change(&mut cfg, c)?;
        }
        let lock = self.lock()?;
        let scratch = self.scratch(&lock, "import")?;
        let dir = scratch.dir.join("layer");
        let unpacked = match src {
            ImportSource::Stream(r) => {
                let (_, dec) = compress::decoder(BufReader::with_capacity(256 * 1024, r)).ctx(|| "read import source".into())?;
                layer::unpack(dec, &dir)?
            }
            ImportSource::Dir(d) => {
                if !d.is_dir() {
                    return Err(Error::not_found(format!("{} is not a directory", d.display())));
                }
                let tarball = scratch.dir.join("rootfs.tar");
                let f = File::create(&tarball).ctx_path("create", &tarball)?;
                let mut w = TarOut::new(std::io::BufWriter::new(f));
                for (rel, p, m) in walk(d)? {
                    w.path(&rel, &p, &m)?;
                }
                std::io::Write::flush(&mut w.finish()?).ctx_path("write", &tarball)?;
                let f = File::open(&tarball).ctx_path("open", &tarball)?;
                layer::unpack(BufReader::new(f), &dir)?
            }
        };
        let plat = opts.platform.clone().unwrap_or_else(Platform::host);
        let now = timefmt::rfc3339(timefmt::now());
        let mut config = json!({
            "architecture": plat.arch,
            "os": plat.os,
            "created": now,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [unpacked.diff_id.to_string()]},
            "history": [{"created": now, "created_by": "berth import", "comment": opts.message.clone().unwrap_or_else(|| "Imported".into())}],
        });
        if let Some(v) = &plat.variant {
            config["variant"] = json!(v);
        }
        let config = serde_json::to_vec(&config).map_err(|e| Error::invalid(e.to_string()))?;
        let id = Digest::of(&config);
        let rec = ImageRecord {
            id: id.clone(),
            tags: Vec::new(),
            digests: Vec::new(),
            layers: vec![unpacked.diff_id.clone()],
            os: plat.os.clone(),
            arch: plat.arch.clone(),
            variant: plat.variant.clone(),
            created: Some(now),
            size: unpacked.size,
        };
        self.commit(&lock, rec, &config, &[(unpacked.diff_id.clone(), unpacked.size, dir)], tag.as_deref())?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_dockerfile() {
        let mut c = Map::new();
        apply_change(&mut c, r#"CMD ["/bin/sh", "-c", "echo hi"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT top -b").unwrap();
        apply_change(&mut c, r#"ENV A=1 B="two words""#).unwrap();
        apply_change(&mut c, "ENV A 3").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut c, "workdir /srv").unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["WorkingDir"], json!("/srv"));
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
        assert!(apply_change(&mut c, "CMD [broken").is_err());
    }
}
