//! Loading a project as `docker compose` does: which files (`-f`, `COMPOSE_FILE`, or
//! compose.yaml & co. found in the working directory or the nearest parent holding one, plus its
//! override file), which variables (the environment over `.env` or `--env-file`), which name
//! (`-p`, `COMPOSE_PROJECT_NAME`, `name:`, or the project directory's name, normalised), then
//! interpolation, merging, resolution (`env_file`, relative paths, resource names) and validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{parse_project, Error, MountKind, Network, Project, Result};
use crate::yaml::{self, Value, MAX_BYTES};

/// The names Compose looks for, in its order of preference.
pub const FILE_NAMES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
const OVERRIDE_NAMES: [&str; 4] =
    ["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"];

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f` in order; empty: `COMPOSE_FILE` or discovery from `workdir`.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`; empty: `.env` in the project directory, when present.
    pub env_files: Vec<PathBuf>,
    /// Where relative `-f`/`--env-file` paths start and discovery begins.
    pub workdir: PathBuf,
    /// The process environment (it wins over `.env`).
    pub environ: BTreeMap<String, String>,
}

/// A loaded, resolved and validated project.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub project: Project,
    /// Things Compose warns about (unset variables, several candidate files, `version`).
    pub warnings: Vec<String>,
}

/// Finds the compose file(s) when no `-f` is given: the first directory, from `start` upward,
/// that holds one of [`FILE_NAMES`]; its override file comes along.
pub fn discover(start: &Path, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let found: Vec<PathBuf> = FILE_NAMES.iter().map(|n| d.join(n)).filter(|p| p.is_file()).collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
                warnings.push(format!("Found multiple config files with supported names: {}\nUsing {}", names.join(", "), first.display()));
            }
            let mut files = vec![first.clone()];
            if let Some(o) = OVERRIDE_NAMES.iter().map(|n| d.join(n)).find(|p| p.is_file()) {
                files.push(o);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(Error::plain("no configuration file provided: not found (compose.yaml, compose.yml, docker-compose.yaml or docker-compose.yml)"))
}

/// Compose's rule for a project name given explicitly.
pub fn valid_project_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// A directory name made into a project name: lower case, only `[a-z0-9_-]`, starting with a
/// letter or digit.
pub fn normalize_project_name(s: &str) -> String {
    let lower: String =
        s.to_lowercase().chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_').collect();
    lower.trim_start_matches(['-', '_']).to_string()
}

fn absolute(workdir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    }
}

fn read_limited(path: &Path) -> Result<String> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::plain(format!("{shown}: {e}")))?;
    if meta.len() > MAX_BYTES as u64 {
        return Err(Error::plain(format!("{shown}: the file is {} bytes, over the {MAX_BYTES} byte limit", meta.len())));
    }
    std::fs::read_to_string(path).map_err(|e| Error::plain(format!("{shown}: {e}")))
}

/// Loads from the file system, as the `berth compose` commands do.
pub fn load(opts: &Options) -> Result<Loaded> {
    let mut warnings = Vec::new();
    let files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files.iter().map(|f| absolute(&opts.workdir, f)).collect()
    } else if let Some(list) = opts.environ.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = opts.environ.get("COMPOSE_PATH_SEPARATOR").map(String::as_str).unwrap_or(":");
        list.split(sep).filter(|s| !s.is_empty()).map(|f| absolute(&opts.workdir, Path::new(f))).collect()
    } else {
        discover(&opts.workdir, &mut warnings)?
    };
    let dir = files.first().and_then(|f| f.parent()).map(Path::to_path_buf).unwrap_or_else(|| opts.workdir.clone());
    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let dot = dir.join(".env");
        if dot.is_file() {
            vec![dot]
        } else {
            vec![]
        }
    } else {
        opts.env_files.iter().map(|f| absolute(&opts.workdir, f)).collect()
    };
    let mut dotenv: Vec<(String, String)> = Vec::new();
    for f in &env_files {
        let text = read_limited(f)?;
        let shown = f.display().to_string();
        let environ = &opts.environ;
        let lookup = |n: &str| environ.get(n).cloned();
        dotenv.extend(crate::dotenv::parse(&text, &shown, &lookup).map_err(Error::plain)?);
    }
    let mut texts = Vec::new();
    for f in &files {
        texts.push((f.display().to_string(), read_limited(f)?));
    }
    let (project, mut more) = load_texts(&texts, &dir, opts, &dotenv)?;
    warnings.append(&mut more);
    let name = project.name.clone().unwrap_or_default();
    Ok(Loaded { name, dir, files, project, warnings })
}

/// Everything after the reading: `texts` are (name for errors, content) in `-f` order; `dir`
/// is the project directory; `dotenv` the variables of `.env`/`--env-file`. The project's
/// `name` is set. Pure, so tests and the fuzzer can drive it.
pub fn load_texts(texts: &[(String, String)], dir: &Path, opts: &Options, dotenv: &[(String, String)]) -> Result<(Project, Vec<String>)> {
    let mut warnings = Vec::new();
    let environ = &opts.environ;
    let lookup = |n: &str| environ.get(n).cloned().or_else(|| dotenv.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone()));
    let mut merged: Option<yaml::Node> = None;
    let mut unset = Vec::new();
    for (name, text) in texts {
        let mut tree = yaml::parse(text).map_err(|e| Error::at(e.mark, e.msg).in_file(name))?;
        if !matches!(tree.value, Value::Map(_) | Value::Null) {
            return Err(Error::at(tree.mark, "the top level must be a mapping").in_file(name));
        }
        // Extensions are not interpolated: they often hold templates meant for other tools.
        if let Value::Map(m) = &mut tree.value {
            m.retain(|(k, _)| !k.text.starts_with("x-"));
            if m.iter().any(|(k, _)| k.text == "version") {
                warnings.push(format!(
                    "{name}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"
                ));
            }
        }
        crate::interp::interpolate_tree(&mut tree, &lookup, &mut unset).map_err(|(m, e)| Error::at(m, e).in_file(name))?;
        // Each file on its own first, so an unknown key or a bad value names its own file.
        parse_project(&tree).map_err(|e| e.in_file(name))?;
        match &mut merged {
            None => merged = Some(tree),
            Some(base) => crate::merge::merge(base, tree),
        }
    }
    unset.sort();
    unset.dedup();
    for v in unset {
        warnings.push(format!("The \"{v}\" variable is not set. Defaulting to a blank string."));
    }
    let first = texts.first().map(|(n, _)| n.as_str()).unwrap_or("compose file");
    let tree = merged.ok_or_else(|| Error::plain("no compose file given"))?;
    let mut p = parse_project(&tree).map_err(|e| e.in_file(first))?;
    let name = project_name(opts, &lookup, p.name.as_deref(), dir)?;
    p.name = Some(name.clone());
    resolve(&mut p, &name, dir, &lookup)?;
    crate::validate::check(&p).map_err(|e| e.in_file(first))?;
    Ok((p, warnings))
}

fn project_name(opts: &Options, lookup: &dyn Fn(&str) -> Option<String>, from_file: Option<&str>, dir: &Path) -> Result<String> {
    let explicit =
        opts.project_name.clone().or_else(|| lookup("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty())).or(from_file.map(str::to_string));
    if let Some(n) = explicit {
        if !valid_project_name(&n) {
            return Err(Error::plain(format!(
                "invalid project name {n:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
            )));
        }
        return Ok(n);
    }
    let base = dir.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let n = normalize_project_name(&base);
    if n.is_empty() {
        return Err(Error::plain(format!("project name must not be empty (directory {:?}; use -p)", dir.display().to_string())));
    }
    Ok(n)
}

fn expand_home(p: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", lookup("HOME").unwrap_or_default()),
        _ => p.to_string(),
    }
}

/// Lexically cleans `a/./b/../c` to `a/c` (no symlinks followed: the path may not exist yet).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn resolve(p: &mut Project, name: &str, dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    for (sname, s) in p.services.iter_mut() {
        // env_file first, `environment:` wins over it.
        let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
        for f in std::mem::take(&mut s.env_file) {
            let path = clean(&dir.join(expand_home(&f.path, lookup)));
            let text = match read_limited(&path) {
                Ok(t) => t,
                Err(_) if !f.required => continue,
                Err(e) => return Err(Error::plain(format!("services.{sname}.env_file: {e}"))),
            };
            let shown = path.display().to_string();
            for (k, v) in crate::dotenv::parse(&text, &shown, &lookup).map_err(Error::plain)? {
                env.insert(k, Some(v));
            }
        }
        for (k, v) in std::mem::take(&mut s.environment) {
            // `- NAME` / `NAME:` take the value from the environment, as Compose resolves it.
            let v = v.or_else(|| lookup(&k));
            env.insert(k, v);
        }
        s.environment = env;
        for m in s.volumes.iter_mut() {
            if m.kind == MountKind::Bind {
                if let Some(src) = &m.source {
                    m.source = Some(clean(&dir.join(expand_home(src, lookup))).display().to_string());
                }
            }
        }
        if s.networks.is_empty() && s.network_mode.is_none() {
            s.networks.insert("default".into(), None);
        }
    }
    let uses_default = p.services.values().any(|s| s.networks.contains_key("default"));
    if uses_default && !p.networks.contains_key("default") {
        p.networks.insert("default".into(), Network::default());
    }
    for (key, n) in p.networks.iter_mut() {
        if n.name.is_none() {
            n.name = Some(if n.external { key.clone() } else { format!("{name}_{key}") });
        }
    }
    for (key, v) in p.volumes.iter_mut() {
        if v.name.is_none() {
            v.name = Some(if v.external { key.clone() } else { format!("{name}_{key}") });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(env: &[(&str, &str)]) -> Options {
        Options {
            workdir: PathBuf::from("/srv/My App"),
            environ: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    fn load1(text: &str, o: &Options) -> Result<(Project, Vec<String>)> {
        load_texts(&[("compose.yaml".into(), text.into())], Path::new("/srv/My App"), o, &[])
    }

    #[test]
    fn names() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("__x-Y"), "x-y");
        assert!(valid_project_name("a-b_1"));
        for bad in ["", "A", "-a", "a.b", "a b"] {
            assert!(!valid_project_name(bad), "{bad}");
        }
        let t = "services: {a: {image: x}}\n";
        assert_eq!(load1(t, &opts(&[])).unwrap().0.name.as_deref(), Some("myapp"));
        let named = "name: fromfile\nservices: {a: {image: x}}\n";
        assert_eq!(load1(named, &opts(&[])).unwrap().0.name.as_deref(), Some("fromfile"));
        assert_eq!(load1(named, &opts(&[("COMPOSE_PROJECT_NAME", "fromenv")])).unwrap().0.name.as_deref(), Some("fromenv"));
        let mut o = opts(&[("COMPOSE_PROJECT_NAME", "fromenv")]);
        o.project_name = Some("flag".into());
        assert_eq!(load1(named, &o).unwrap().0.name.as_deref(), Some("flag"));
        o.project_name = Some("Bad".into());
        assert!(load1(named, &o).unwrap_err().msg.contains("invalid project name \"Bad\""));
    }

    #[test]
    fn resolution() {
        let t = "services:
  web:
    image: app
    environment: [FROM_SHELL, FROM_DOTENV, MISSING, SET=x]
    volumes: ['./data:/data', '~/cfg:/cfg:ro', 'db:/db']
volumes:
  db:
  ext: {external: true}
";
        let dotenv = vec![("FROM_DOTENV".to_string(), "d".to_string()), ("FROM_SHELL".to_string(), "loses".to_string())];
        let (p, _) = load_texts(
            &[("compose.yaml".into(), t.into())],
            Path::new("/srv/app"),
            &opts(&[("FROM_SHELL", "s"), ("HOME", "/root")]),
            &dotenv,
        )
        .unwrap();
        let web = &p.services["web"];
        let env: Vec<(&str, Option<&str>)> = web.environment.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        assert_eq!(env, [("FROM_DOTENV", Some("d")), ("FROM_SHELL", Some("s")), ("MISSING", None), ("SET", Some("x"))]);
        assert_eq!(web.volumes[0].source.as_deref(), Some("/srv/app/data"));
        assert_eq!(web.volumes[1].source.as_deref(), Some("/root/cfg"));
        assert_eq!(web.volumes[2].source.as_deref(), Some("db"));
        assert_eq!(p.volumes["db"].name.as_deref(), Some("app_db"));
        assert_eq!(p.volumes["ext"].name.as_deref(), Some("ext"));
        assert_eq!(p.networks["default"].name.as_deref(), Some("app_default"));
        assert!(web.networks.contains_key("default"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = load1("services:\n  web:\n    image: x\n    build: .\n", &opts(&[])).unwrap_err();
        assert_eq!(e.to_string(), "compose.yaml line 4 column 5: services.web: unknown key \"build\" (not supported by berth)");
        let e = load1("services:\n  web:\n    image: ${IMG:?set IMG}\n", &opts(&[])).unwrap_err();
        assert_eq!(e.to_string(), "compose.yaml line 3 column 12: required variable IMG is missing a value: set IMG");
        let e = load1("services:\n  web: [\n", &opts(&[])).unwrap_err();
        assert!(e.to_string().starts_with("compose.yaml line 3 column 1: "), "{e}");
        let e = load1("secrets: {}\n", &opts(&[])).unwrap_err();
        assert_eq!(e.to_string(), "compose.yaml line 1 column 1: top level: unknown key \"secrets\" (not supported by berth)");
        // The second file's own mistakes name it.
        let texts = [
            ("a.yaml".to_string(), "services: {web: {image: x}}\n".to_string()),
            ("b.yaml".to_string(), "services:\n  web:\n    imag: y\n".to_string()),
        ];
        let e = load_texts(&texts, Path::new("/p"), &opts(&[]), &[]).unwrap_err();
        assert!(e.to_string().starts_with("b.yaml line 3 column 5: "), "{e}");
    }

    #[test]
    fn warnings_and_extensions() {
        let t = "version: '3.8'\nx-tpl: ${NOT_INTERPOLATED:?never}\nx-common: &c {image: busybox}\nservices:\n  a:\n    <<: *c\n    command: echo $UNSET_VAR\n";
        let (p, w) = load1(t, &opts(&[])).unwrap();
        assert!(w.iter().any(|w| w.contains("`version` is obsolete")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("\"UNSET_VAR\" variable is not set")), "{w:?}");
        assert_eq!(p.services["a"].image.as_deref(), Some("busybox"));
        assert_eq!(p.services["a"].command.as_deref(), Some(&["echo".to_string()][..]));
    }

    #[test]
    fn discovery_walks_up() {
        let base = std::env::temp_dir().join(format!("berth-compose-discover-{}", std::process::id()));
        let deep = base.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(base.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(base.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(base.join("compose.override.yaml"), "services: {}\n").unwrap();
        let mut w = Vec::new();
        let found = discover(&deep, &mut w).unwrap();
        assert_eq!(found, [base.join("compose.yaml"), base.join("compose.override.yaml")]);
        assert!(w[0].contains("Found multiple config files"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
