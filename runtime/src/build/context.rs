//! The build context and other source trees of COPY (a stage's or an image's merged layers):
//! resolving a source (cleaned, globs expanded, symlinks followed but never out of the tree),
//! and the content hash that keys the cache (names, types, modes, sizes and file contents; not
//! times or the context's owners, which COPY does not carry over either).

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::build::ignore::{clean, Ignore, Pattern};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::image::tarwrite::walk;

/// Entries by path relative to the tree's root (`a/b`, no leading `/`).
pub type Tree = BTreeMap<String, (PathBuf, Metadata)>;

#[derive(Debug)]
pub struct Source {
    pub tree: Tree,
    /// The build context (symlinks out of it are errors) rather than an image's file system
    /// (where an absolute link means the image's own root).
    pub is_context: bool,
    pub what: String,
}

/// The build context directory, without what `.dockerignore` leaves out; refused above `limit` bytes.
pub fn context(root: &Path, ignore: &Ignore, limit: u64) -> Result<Source> {
    if !root.is_dir() {
        return Err(Error::not_found(format!("unable to prepare context: path {:?} not found", root.display().to_string())));
    }
    let mut tree = Tree::new();
    let mut total = 0u64;
    for (rel, p, m) in walk(root)? {
        let rel = String::from_utf8(rel).map_err(|_| Error::invalid(format!("{}: file name is not UTF-8", p.display())))?;
        if ignore.excluded(&rel) {
            continue;
        }
        if m.is_file() {
            total += m.len();
            if total > limit {
                return Err(Error::invalid(format!(
                    "build context {} is larger than the limit of {} MiB (leave files out with .dockerignore)",
                    root.display(),
                    limit >> 20
                )));
            }
        }
        tree.insert(rel, (p, m));
    }
    Ok(Source { tree, is_context: true, what: "the build context".into() })
}

/// The merged view of an image's layers (lowest first).
pub fn layers(roots: &[PathBuf], what: &str) -> Result<Source> {
    let mut tree = Tree::new();
    for (rel, v) in crate::image::export::merged(roots)? {
        tree.insert(String::from_utf8_lossy(&rel).into_owned(), v);
    }
    Ok(Source { tree, is_context: false, what: what.into() })
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Source {
    /// Follows symlinks along `rel` inside the tree. In the context a link that leaves it is an
    /// error; in an image an absolute link starts again at the image's root.
    pub fn follow(&self, rel: &str, src: &str) -> Result<String> {
        let mut todo: Vec<String> = rel.split('/').filter(|c| !c.is_empty() && *c != ".").rev().map(String::from).collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                if done.pop().is_none() {
                    return Err(Error::invalid(format!("{src}: outside {}", self.what)));
                }
                continue;
            }
            done.push(c);
            let cur = done.join("/");
            let Some((p, m)) = self.tree.get(&cur) else { continue };
            if !m.file_type().is_symlink() {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(Error::invalid(format!("{src}: too many levels of symbolic links")));
            }
            let target = fs::read_link(p).ctx_path("read link", p)?;
            let t = target.to_string_lossy().into_owned();
            done.pop();
            if t.starts_with('/') {
                if self.is_context {
                    return Err(Error::invalid(format!("{src}: the symlink {cur} points outside {} ({t})", self.what)));
                }
                done.clear();
            } else if self.is_context {
                let joined = clean(&format!("{}/{t}", done.join("/")));
                if joined == ".." || joined.starts_with("../") {
                    return Err(Error::invalid(format!("{src}: the symlink {cur} points outside {} ({t})", self.what)));
                }
            }
            todo.extend(t.split('/').filter(|c| !c.is_empty() && *c != ".").rev().map(String::from));
        }
        Ok(done.join("/"))
    }

    /// The tree paths a COPY source names: one path, or every match of a glob.
    pub fn resolve(&self, src: &str) -> Result<Vec<String>> {
        let c = clean(src.trim_start_matches('/'));
        if c == ".." || c.starts_with("../") {
            return Err(Error::invalid(format!("{src}: outside {}", self.what)));
        }
        let c = if c == "." { String::new() } else { c };
        if is_glob(&c) {
            let pat = Pattern::new(&c)?;
            let hits: Vec<String> = self.tree.keys().filter(|k| pat.matches(k)).cloned().collect();
            if hits.is_empty() {
                return Err(Error::not_found(format!("{src}: no source files were specified (no match in {})", self.what)));
            }
            // A match inside a matched directory comes with it.
            let mut out: Vec<String> = Vec::new();
            for h in hits {
                if !out.iter().any(|o| h.starts_with(&format!("{o}/"))) {
                    out.push(h);
                }
            }
            return out.iter().map(|h| self.follow(h, src)).collect();
        }
        let r = self.follow(&c, src)?;
        if !r.is_empty() && !self.tree.contains_key(&r) {
            return Err(Error::not_found(format!("{src}: not found in {}", self.what)));
        }
        Ok(vec![r])
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        rel.is_empty() || self.tree.get(rel).is_some_and(|(_, m)| m.is_dir())
    }

    /// `rel` and everything below it (all of the tree for the root), in path order.
    pub fn under<'a>(&'a self, rel: &'a str) -> impl Iterator<Item = (&'a String, &'a (PathBuf, Metadata))> + 'a {
        self.tree
            .iter()
            .filter(move |(k, _)| rel.is_empty() || *k == rel || (k.starts_with(rel) && k.as_bytes().get(rel.len()) == Some(&b'/')))
    }

    /// The content hash of what copying `rels` brings in.
    pub fn hash(&self, rels: &[String]) -> Result<Digest> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        for rel in rels {
            h.update(b"source\0");
            h.update(rel.as_bytes());
            for (k, (p, m)) in self.under(rel) {
                h.update(format!("\0{k}\0{:o}\0{}\0", m.mode(), m.len()).as_bytes());
                if m.file_type().is_symlink() {
                    h.update(fs::read_link(p).ctx_path("read link", p)?.as_os_str().as_bytes());
                } else if m.is_file() {
                    let mut f = File::open(p).ctx_path("open", p)?;
                    loop {
                        let n = f.read(&mut buf).ctx_path("read", p)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
            }
        }
        Ok(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-ctx-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("src/sub")).unwrap();
        fs::write(d.join("src/a.txt"), "a").unwrap();
        fs::write(d.join("src/b.txt"), "b").unwrap();
        fs::write(d.join("src/sub/c.txt"), "c").unwrap();
        fs::write(d.join("src-x"), "x").unwrap();
        fs::write(d.join("notes.md"), "n").unwrap();
        symlink("src/a.txt", d.join("link")).unwrap();
        symlink("/etc/passwd", d.join("abs")).unwrap();
        symlink("../../etc", d.join("src/up")).unwrap();
        d
    }

    #[test]
    fn resolve_globs_links_and_escapes() {
        let d = ctx("resolve");
        let s = context(&d, &Ignore::parse("*.md").unwrap(), 1 << 30).unwrap();
        assert_eq!(s.resolve("src/*.txt").unwrap(), ["src/a.txt", "src/b.txt"]);
        assert_eq!(s.resolve("./src/../src/a.txt").unwrap(), ["src/a.txt"]);
        assert_eq!(s.resolve("link").unwrap(), ["src/a.txt"]);
        assert_eq!(s.resolve(".").unwrap(), [""]);
        assert_eq!(s.resolve("notes.md").unwrap_err().to_string(), "notes.md: not found in the build context");
        assert_eq!(s.resolve("../x").unwrap_err().to_string(), "../x: outside the build context");
        assert!(s.resolve("abs").unwrap_err().to_string().contains("the symlink abs points outside the build context"));
        assert!(s.resolve("src/up/passwd").unwrap_err().to_string().contains("points outside the build context"));
        assert!(s.resolve("*.nothing").unwrap_err().to_string().contains("no source files"));
        let under: Vec<&String> = s.under("src").map(|(k, _)| k).collect();
        assert!(under.contains(&&"src/sub/c.txt".to_string()) && !under.contains(&&"src-x".to_string()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hash_follows_content_not_times() {
        let d = ctx("hash");
        let s = context(&d, &Ignore::default(), 1 << 30).unwrap();
        let h1 = s.hash(&["src".into()]).unwrap();
        fs::write(d.join("src/a.txt"), "a").unwrap();
        let h2 = context(&d, &Ignore::default(), 1 << 30).unwrap().hash(&["src".into()]).unwrap();
        assert_eq!(h1, h2);
        fs::write(d.join("src/sub/c.txt"), "changed").unwrap();
        let h3 = context(&d, &Ignore::default(), 1 << 30).unwrap().hash(&["src".into()]).unwrap();
        assert_ne!(h1, h3);
        assert!(context(&d, &Ignore::default(), 3).unwrap_err().to_string().contains("larger than the limit"));
        fs::remove_dir_all(&d).unwrap();
    }
}
