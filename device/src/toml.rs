//! The TOML that berth's own settings files are written in: board profiles and
//! `/etc/berth/berth.toml`. Tables (`[a]`, `[a.b]`), dotted and quoted keys, basic and literal
//! strings (single- and multi-line, with TOML's escapes), integers (decimal, `0x`, `0o`, `0b`,
//! `_` between digits), booleans, arrays and inline tables. Floats, dates and arrays of tables
//! (`[[a]]`) are refused with their line: no berth setting takes one.
//!
//! Our own rather than a crate: a serde-driven TOML reader plus the derived deserializers of the
//! two settings types cost the aarch64 firmware about 60 KB; this reader and the plain
//! field-by-field reads of `Table` cost a fraction of that, and their errors name the line of the
//! key they are about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A problem with a settings file: a syntax error or a key of the wrong kind, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(line: usize, msg: impl fmt::Display) -> Result<T, Error> {
    Err(Error(format!("line {line}: {msg}")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Value>),
    Table(Table),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A table, read key by key: each read takes the key out, and [`Table::finish`] refuses what is
/// left, so a misspelt setting is an error, not a silently ignored line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Dotted name for messages (`mqtt`, `memory`); empty for the document itself.
    name: String,
    /// Where the table was opened (its header, or the first key that made it).
    line: usize,
    /// Made by a `[header]` (a second header of the same name is an error).
    explicit: bool,
    entries: Vec<(String, usize, Value)>,
}

impl Table {
    fn new(line: usize) -> Table {
        Table { line, ..Table::default() }
    }

    fn find(&mut self, key: &str) -> Option<&mut Value> {
        self.entries.iter_mut().find(|(k, ..)| k == key).map(|(_, _, v)| v)
    }

    /// The sub-table under `key`, made (implicitly) when missing.
    fn child(&mut self, key: &str, line: usize) -> Result<&mut Table, Error> {
        let i = match self.entries.iter().position(|(k, ..)| k == key) {
            Some(i) => i,
            None => {
                self.entries.push((key.to_string(), line, Value::Table(Table::new(line))));
                self.entries.len() - 1
            }
        };
        match &mut self.entries[i].2 {
            Value::Table(t) => Ok(t),
            other => err(line, format_args!("`{key}` is {}, not a table", other.kind())),
        }
    }

    fn insert(&mut self, path: &[String], value: Value, line: usize) -> Result<(), Error> {
        let (last, parents) = path.split_last().ok_or_else(|| Error(format!("line {line}: empty key")))?;
        let mut t = self;
        for k in parents {
            t = t.child(k, line)?;
        }
        if t.find(last).is_some() {
            return err(line, format_args!("duplicate key `{last}`"));
        }
        t.entries.push((last.clone(), line, value));
        Ok(())
    }

    fn full_key(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    /// Takes `key` out of the table, with its line.
    pub fn take(&mut self, key: &str) -> Option<(Value, usize)> {
        let i = self.entries.iter().position(|(k, ..)| k == key)?;
        let (_, line, v) = self.entries.remove(i);
        Some((v, line))
    }

    fn wrong<T>(&self, key: &str, line: usize, want: &str, got: &Value) -> Result<T, Error> {
        err(line, format_args!("{}: expected {want}, found {}", self.full_key(key), got.kind()))
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, Error> {
        match self.take(key) {
            None => Ok(None),
            Some((Value::Str(s), _)) => Ok(Some(s)),
            Some((v, line)) => self.wrong(key, line, "a string", &v),
        }
    }

    /// A string the table must have.
    pub fn required(&mut self, key: &str) -> Result<String, Error> {
        let line = self.line;
        match self.string(key)? {
            Some(s) => Ok(s),
            None if self.name.is_empty() => Err(Error(format!("missing key `{key}`"))),
            None => err(line, format_args!("[{}]: missing key `{key}`", self.name)),
        }
    }

    pub fn path(&mut self, key: &str) -> Result<Option<PathBuf>, Error> {
        Ok(self.string(key)?.map(PathBuf::from))
    }

    /// An array of strings; a missing key is an empty one.
    pub fn strings(&mut self, key: &str) -> Result<Vec<String>, Error> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some((Value::Array(items), line)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    v => self.wrong(key, line, "an array of strings", &v),
                })
                .collect(),
            Some((v, line)) => self.wrong(key, line, "an array of strings", &v),
        }
    }

    pub fn paths(&mut self, key: &str) -> Result<Vec<PathBuf>, Error> {
        Ok(self.strings(key)?.into_iter().map(PathBuf::from).collect())
    }

    /// A non-negative integer.
    pub fn uint(&mut self, key: &str) -> Result<Option<u64>, Error> {
        match self.take(key) {
            None => Ok(None),
            Some((Value::Int(n), line)) => match u64::try_from(n) {
                Ok(n) => Ok(Some(n)),
                Err(_) => err(line, format_args!("{}: expected a non-negative integer, found {n}", self.full_key(key))),
            },
            Some((v, line)) => self.wrong(key, line, "an integer", &v),
        }
    }

    /// The table under `key`; a missing one is empty.
    pub fn table(&mut self, key: &str) -> Result<Table, Error> {
        let name = self.full_key(key);
        match self.take(key) {
            None => Ok(Table { name, line: self.line, ..Table::default() }),
            Some((Value::Table(t), _)) => Ok(Table { name, ..t }),
            Some((v, line)) => self.wrong(key, line, "a table", &v),
        }
    }

    /// Every key of the table, each with a string value (a name → path map such as `[devices]`).
    pub fn string_map(mut self) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        for (k, line, v) in std::mem::take(&mut self.entries) {
            match v {
                Value::Str(s) => {
                    out.insert(k, s);
                }
                v => return self.wrong(&k, line, "a string", &v),
            }
        }
        Ok(out)
    }

    /// Refuses any key that no read took.
    pub fn finish(self) -> Result<(), Error> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, line, _)) if self.name.is_empty() => err(*line, format_args!("unknown key `{k}`")),
            Some((k, line, _)) => err(*line, format_args!("unknown key `{k}` in [{}]", self.name)),
        }
    }
}

/// Reads a document into its top-level table.
pub fn parse(text: &str) -> Result<Table, Error> {
    let mut p = Parser { s: text.as_bytes(), i: 0, line: 1 };
    let mut root = Table::new(1);
    let mut current: Vec<String> = Vec::new();
    loop {
        p.skip_blank_lines()?;
        let Some(c) = p.peek() else { break };
        let line = p.line;
        if c == b'[' {
            p.i += 1;
            if p.peek() == Some(b'[') {
                return err(line, "arrays of tables ([[...]]) are not supported");
            }
            p.spaces();
            let path = p.key_path()?;
            p.spaces();
            p.expect(b']')?;
            p.end_of_line()?;
            let mut t = &mut root;
            for k in &path {
                t = t.child(k, line)?;
            }
            if t.explicit {
                return err(line, format_args!("table [{}] defined twice", path.join(".")));
            }
            t.explicit = true;
            t.line = line;
            current = path;
        } else {
            let path = p.key_path()?;
            p.spaces();
            p.expect(b'=')?;
            p.spaces();
            let v = p.value()?;
            p.end_of_line()?;
            let mut t = &mut root;
            for k in &current {
                t = t.child(k, line)?;
            }
            t.insert(&path, v, line)?;
        }
    }
    Ok(root)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at(&self, lit: &[u8]) -> bool {
        self.s[self.i..].starts_with(lit)
    }

    fn fail<T>(&self, msg: impl fmt::Display) -> Result<T, Error> {
        err(self.line, msg)
    }

    fn expect(&mut self, c: u8) -> Result<(), Error> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => self.fail(format_args!("expected `{}`, found `{}`", c as char, x.escape_ascii())),
            None => self.fail(format_args!("expected `{}`, found the end of the file", c as char)),
        }
    }

    fn spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A newline (LF or CRLF), counted.
    fn newline(&mut self) -> bool {
        if self.at(b"\r\n") {
            self.i += 2;
        } else if self.peek() == Some(b'\n') {
            self.i += 1;
        } else {
            return false;
        }
        self.line += 1;
        true
    }

    fn comment(&mut self) {
        if self.peek() == Some(b'#') {
            while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                self.i += 1;
            }
        }
    }

    fn skip_blank_lines(&mut self) -> Result<(), Error> {
        loop {
            self.spaces();
            self.comment();
            if self.peek().is_none() {
                return Ok(());
            }
            if !self.newline() {
                return match self.peek() {
                    Some(b'\r') => self.fail("a carriage return without a line feed"),
                    _ => Ok(()),
                };
            }
        }
    }

    /// Spaces, newlines and comments inside an array.
    fn skip_in_array(&mut self) {
        loop {
            self.spaces();
            self.comment();
            if !self.newline() {
                return;
            }
        }
    }

    fn end_of_line(&mut self) -> Result<(), Error> {
        self.spaces();
        self.comment();
        if self.peek().is_none() || self.newline() {
            Ok(())
        } else {
            self.fail(format_args!("unexpected `{}` after the value (one key = value per line)", self.s[self.i].escape_ascii()))
        }
    }

    fn key_path(&mut self) -> Result<Vec<String>, Error> {
        let mut path = vec![self.key()?];
        loop {
            self.spaces();
            if self.peek() != Some(b'.') {
                return Ok(path);
            }
            self.i += 1;
            self.spaces();
            path.push(self.key()?);
        }
    }

    fn key(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some(b'"') => self.basic_string(),
            Some(b'\'') => self.literal_string(),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                    self.i += 1;
                }
                if start == self.i {
                    return match self.peek() {
                        Some(c) => self.fail(format_args!("expected a key, found `{}`", c.escape_ascii())),
                        None => self.fail("expected a key, found the end of the file"),
                    };
                }
                Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
            }
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        match self.peek() {
            Some(b'"') if self.at(b"\"\"\"") => self.multiline_basic().map(Value::Str),
            Some(b'\'') if self.at(b"'''") => self.multiline_literal().map(Value::Str),
            Some(b'"') => self.basic_string().map(Value::Str),
            Some(b'\'') => self.literal_string().map(Value::Str),
            Some(b'[') => self.array(),
            Some(b'{') => self.inline_table(),
            Some(_) => self.bare_value(),
            None => self.fail("expected a value, found the end of the file"),
        }
    }

    fn array(&mut self) -> Result<Value, Error> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_in_array();
            if self.peek() == Some(b']') {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.skip_in_array();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {}
                _ => return self.fail("expected `,` or `]` in an array"),
            }
        }
    }

    fn inline_table(&mut self) -> Result<Value, Error> {
        let line = self.line;
        self.i += 1;
        let mut t = Table::new(line);
        self.spaces();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.spaces();
            if matches!(self.peek(), Some(b'\n' | b'\r')) {
                return self.fail("expected a key: an inline table stays on one line");
            }
            let path = self.key_path()?;
            self.spaces();
            self.expect(b'=')?;
            self.spaces();
            let v = self.value()?;
            t.insert(&path, v, line)?;
            self.spaces();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Table(t));
                }
                _ => return self.fail("expected `,` or `}` in an inline table (which stays on one line)"),
            }
        }
    }

    /// true, false or an integer; what looks like a float or a date is named as such.
    fn bare_value(&mut self) -> Result<Value, Error> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.' | b':')) {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match word {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            "" => return self.fail(format_args!("expected a value, found `{}`", self.s[self.i].escape_ascii())),
            _ => {}
        }
        match integer(word) {
            Some(n) => Ok(Value::Int(n)),
            None if word.contains([':', '.']) || matches!(word.trim_start_matches(['+', '-']), "inf" | "nan") || looks_like_date(word) => {
                self.fail(format_args!("`{word}`: floats and dates are not supported in berth's settings"))
            }
            None => self.fail(format_args!("`{word}` is not a value (strings need quotes)")),
        }
    }

    fn basic_string(&mut self) -> Result<String, Error> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r') => return self.fail("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return self.utf8(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(c) if is_control(c) => return self.fail("a control character in a string (escape it)"),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn literal_string(&mut self) -> Result<String, Error> {
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r') => return self.fail("unterminated string"),
                Some(b'\'') => {
                    let s = self.s[start..self.i].to_vec();
                    self.i += 1;
                    return self.utf8(s);
                }
                Some(c) if is_control(c) => return self.fail("a control character in a string"),
                Some(_) => self.i += 1,
            }
        }
    }

    fn multiline_basic(&mut self) -> Result<String, Error> {
        self.i += 3;
        // A newline right after the opening quotes is not part of the string.
        self.newline();
        let mut out = Vec::new();
        loop {
            if self.at(b"\"\"\"") {
                // Up to two quotes may end the content right before the closing three.
                let mut n = 3;
                while self.s.get(self.i + n) == Some(&b'"') && n < 5 {
                    n += 1;
                }
                out.extend(std::iter::repeat_n(b'"', n - 3));
                self.i += n;
                return self.utf8(out);
            }
            match self.peek() {
                None => return self.fail("unterminated multi-line string"),
                Some(b'\\') if matches!(self.s.get(self.i + 1), Some(b' ' | b'\t' | b'\n' | b'\r')) => {
                    // A line-ending backslash: the newline and the whitespace after it go.
                    self.i += 1;
                    self.spaces();
                    if !self.newline() {
                        return self.fail("only whitespace may follow a line-ending backslash");
                    }
                    while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                        if !self.newline() {
                            self.i += 1;
                        }
                    }
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(b'\n' | b'\r') => {
                    if !self.newline() {
                        return self.fail("a carriage return without a line feed");
                    }
                    out.push(b'\n');
                }
                Some(c) if is_control(c) => return self.fail("a control character in a string (escape it)"),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn multiline_literal(&mut self) -> Result<String, Error> {
        self.i += 3;
        // A newline right after the opening quotes is not part of the string.
        self.newline();
        let mut out = Vec::new();
        loop {
            if self.at(b"'''") {
                let mut n = 3;
                while self.s.get(self.i + n) == Some(&b'\'') && n < 5 {
                    n += 1;
                }
                out.extend(std::iter::repeat_n(b'\'', n - 3));
                self.i += n;
                return self.utf8(out);
            }
            match self.peek() {
                None => return self.fail("unterminated multi-line string"),
                Some(b'\n' | b'\r') => {
                    if !self.newline() {
                        return self.fail("a carriage return without a line feed");
                    }
                    out.push(b'\n');
                }
                Some(c) if is_control(c) => return self.fail("a control character in a string"),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let c = self.s.get(self.i + 1).copied();
        self.i += 2;
        let simple = match c {
            Some(b'b') => 0x08,
            Some(b't') => b'\t',
            Some(b'n') => b'\n',
            Some(b'f') => 0x0c,
            Some(b'r') => b'\r',
            Some(b'e') => 0x1b,
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'u') => return self.unicode(4, out),
            Some(b'U') => return self.unicode(8, out),
            Some(c) => return self.fail(format_args!("unknown escape `\\{}`", c.escape_ascii())),
            None => return self.fail("unterminated string"),
        };
        out.push(simple);
        Ok(())
    }

    fn unicode(&mut self, digits: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        let hex = self.s.get(self.i..self.i + digits).and_then(|h| std::str::from_utf8(h).ok());
        let ch = hex.filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit())).and_then(|h| u32::from_str_radix(h, 16).ok());
        match ch.and_then(char::from_u32) {
            Some(c) => {
                self.i += digits;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                Ok(())
            }
            None => self.fail(format_args!("bad unicode escape (\\u takes 4 hex digits, \\U 8, of a scalar value)")),
        }
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<String, Error> {
        String::from_utf8(bytes).or_else(|_| self.fail("a string that is not UTF-8"))
    }
}

/// Tabs are allowed in strings; other control characters must be escaped.
fn is_control(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

fn looks_like_date(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// TOML's integers: an optional sign, decimal digits without leading zeros, or 0x/0o/0b; `_` only
/// between two digits.
fn integer(w: &str) -> Option<i64> {
    let (neg, body) = match w.as_bytes().first()? {
        b'-' => (true, &w[1..]),
        b'+' => (false, &w[1..]),
        _ => (false, w),
    };
    let (radix, digits) = match body.get(..2) {
        Some("0x") if body.len() > 2 && w == body => (16, &body[2..]),
        Some("0o") if body.len() > 2 && w == body => (8, &body[2..]),
        Some("0b") if body.len() > 2 && w == body => (2, &body[2..]),
        _ => (10, body),
    };
    let b = digits.as_bytes();
    if b.is_empty() || b[0] == b'_' || b[b.len() - 1] == b'_' || digits.contains("__") {
        return None;
    }
    if radix == 10 && b.len() > 1 && b[0] == b'0' {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if !clean.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i64::from_str_radix(&clean, radix).ok()?;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Table {
        match parse(text) {
            Ok(t) => t,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn fails(text: &str, want: &str) {
        match parse(text) {
            Ok(t) => panic!("{text:?} parsed: {t:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{text:?}: {e} (wanted {want:?})"),
        }
    }

    #[test]
    fn reads_tables_keys_and_values() {
        let mut d = doc(concat!(
            "# a comment\n",
            "name = \"pi\" # trailing\n",
            "count = 1_000\n",
            "hex = 0xff\n",
            "neg = -5\n",
            "on = true\n",
            "\r\n",
            "[mqtt]\n",
            "brokers = [\n  \"mqtts://a:8883\", # first\n  'mqtt://b',\n]\n",
            "empty = []\n",
            "[ devices ]\n",
            "\"spidev0.0\" = \"/dev/spidev0.0\"\n",
            "i2c-1 = '/dev/i2c-1'\n",
            "[a.b]\n",
            "c.d = 2\n",
            "inline = { x = \"y\", z = 3 }\n",
        ));
        assert_eq!(d.string("name").unwrap().as_deref(), Some("pi"));
        assert_eq!(d.uint("count").unwrap(), Some(1000));
        assert_eq!(d.uint("hex").unwrap(), Some(255));
        assert!(d.uint("neg").unwrap_err().to_string().contains("line 5: neg: expected a non-negative integer"));
        assert_eq!(d.take("on").map(|(v, _)| v), Some(Value::Bool(true)));
        let mut m = d.table("mqtt").unwrap();
        assert_eq!(m.strings("brokers").unwrap(), vec!["mqtts://a:8883", "mqtt://b"]);
        assert!(m.strings("empty").unwrap().is_empty());
        assert!(m.strings("missing").unwrap().is_empty());
        m.finish().unwrap();
        let devs = d.table("devices").unwrap().string_map().unwrap();
        assert_eq!(devs.get("spidev0.0").map(String::as_str), Some("/dev/spidev0.0"));
        assert_eq!(devs.get("i2c-1").map(String::as_str), Some("/dev/i2c-1"));
        let mut a = d.table("a").unwrap();
        let mut b = a.table("b").unwrap();
        let mut c = b.table("c").unwrap();
        assert_eq!(c.uint("d").unwrap(), Some(2));
        let mut inline = b.table("inline").unwrap();
        assert_eq!(inline.string("x").unwrap().as_deref(), Some("y"));
        assert_eq!(inline.uint("z").unwrap(), Some(3));
        for t in [c, inline, b, a, d] {
            t.finish().unwrap();
        }
    }

    #[test]
    fn reads_strings_as_toml_defines_them() {
        let mut d = doc(concat!(
            "a = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n",
            "b = 'C:\\path\\no escapes'\n",
            "c = \"\"\"\nline one\nline two \\\n    joined\"\"\"\n",
            "d = '''\nraw \\n\n'''\n",
            "e = \"\"\"quote at end\"\"\"\"\"\n",
            "f = \"café\"\n",
        ));
        assert_eq!(d.string("a").unwrap().unwrap(), "tab\there \"q\" \\ é 😀");
        assert_eq!(d.string("b").unwrap().unwrap(), "C:\\path\\no escapes");
        assert_eq!(d.string("c").unwrap().unwrap(), "line one\nline two joined");
        assert_eq!(d.string("d").unwrap().unwrap(), "raw \\n\n");
        assert_eq!(d.string("e").unwrap().unwrap(), "quote at end\"\"");
        assert_eq!(d.string("f").unwrap().unwrap(), "café");
        d.finish().unwrap();
    }

    #[test]
    fn refuses_what_is_not_toml_or_not_supported_with_the_line() {
        fails("a = 1\nb = \n", "line 2: expected a value");
        fails("a = \"open\n", "line 1: unterminated string");
        fails("a = 1\na = 2\n", "line 2: duplicate key `a`");
        fails("[t]\nx = 1\n[t]\n", "line 3: table [t] defined twice");
        fails("a = 1 b = 2\n", "line 1: unexpected `b` after the value");
        fails("a = bare\n", "`bare` is not a value");
        fails("a = 1.5\n", "floats and dates are not supported");
        fails("a = 1979-05-27\n", "floats and dates are not supported");
        fails("[[servers]]\n", "arrays of tables");
        fails("a = [1, 2\n", "expected `,` or `]`");
        fails("a = \"\\q\"\n", "unknown escape");
        fails("a = \"\\uD800\"\n", "bad unicode escape");
        fails("a = 012\n", "`012` is not a value");
        fails("a = 1__0\n", "is not a value");
        fails("a = 1\na.b = 2\n", "line 2: `a` is an integer, not a table");
        fails("= 1\n", "expected a key");
        fails("a = { x = 1,\n y = 2 }\n", "inline table");
        fails("a = \"x\ty\u{1}\"\n", "control character");
    }

    #[test]
    fn reads_name_the_key_and_its_line() {
        let mut d = doc("[mqtt]\nkeep_alive = \"20\"\nbrokers = [1]\nextra = true\n[storage]\n");
        let mut m = d.table("mqtt").unwrap();
        assert_eq!(m.uint("keep_alive").unwrap_err().to_string(), "line 2: mqtt.keep_alive: expected an integer, found a string");
        assert_eq!(m.strings("brokers").unwrap_err().to_string(), "line 3: mqtt.brokers: expected an array of strings, found an integer");
        assert_eq!(m.finish().unwrap_err().to_string(), "line 4: unknown key `extra` in [mqtt]");
        let mut s = d.table("storage").unwrap();
        assert_eq!(s.required("root").unwrap_err().to_string(), "line 5: [storage]: missing key `root`");
        assert_eq!(d.required("name").unwrap_err().to_string(), "missing key `name`");
        let mut d = doc("x = 1\n");
        assert!(d.table("x").unwrap_err().to_string().contains("line 1: x: expected a table"));
        assert_eq!(doc("y = 1\n").finish().unwrap_err().to_string(), "line 1: unknown key `y`");
    }
}
