//! The YAML reader: saphyr-parser's events built into a small tree where every node keeps its line
//! and column, so an error can name where the user wrote the thing it is about.
//!
//! Bounds, because a compose file may come from a fleet operator's pipeline or an update: the text
//! is at most [`MAX_BYTES`], nesting at most [`MAX_DEPTH`], and the tree at most [`MAX_NODES`]
//! nodes counting every copy an alias makes (an alias bomb, "billion laughs", stops there instead
//! of filling memory). Merge keys (`<<: *base`) are applied as YAML 1.1 and Compose do; duplicate
//! keys are an error, as in Compose v2.

use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};

pub const MAX_BYTES: usize = 1 << 20;
pub const MAX_DEPTH: usize = 64;
pub const MAX_NODES: usize = 200_000;

/// Where something is in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// `plain` is false for quoted and block scalars: `"1"` stays a string, `1` may be a number.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// In file order. Keys are scalars (Compose has no other kind).
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub mark: Mark,
}

/// A YAML error: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub mark: Mark,
    pub msg: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.mark, self.msg)
    }
}

impl Node {
    pub fn new(mark: Mark, value: Value) -> Node {
        Node { mark, value }
    }

    /// How many nodes this one holds, itself included (the alias budget counts copies with it).
    fn count(&self) -> usize {
        // Iterative: a deep tree must not recurse (MAX_DEPTH bounds it, but keep it cheap anyway).
        let mut n = 0;
        let mut todo = vec![self];
        while let Some(x) = todo.pop() {
            n += 1;
            match &x.value {
                Value::Seq(v) => todo.extend(v.iter()),
                Value::Map(m) => todo.extend(m.iter().map(|(_, v)| v)),
                _ => {}
            }
        }
        n
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn mark_of(span: &Span) -> Mark {
    // saphyr: lines are 1-based, columns 0-based.
    Mark { line: span.start.line() as u32, col: span.start.col() as u32 + 1 }
}

/// `!!str` and friends are plain YAML; anything else (`!reset`, `!override`, custom) is not.
fn core_tag(t: &saphyr_parser::Tag) -> bool {
    t.handle == "!!" || t.handle.starts_with("tag:yaml.org,2002:")
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

enum Frame {
    Seq { mark: Mark, anchor: usize, items: Vec<Node> },
    Map { mark: Mark, anchor: usize, items: Vec<(Key, Node)>, key: Option<Key> },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Anchored nodes by anchor id (ids are small, dense, per document).
    anchors: Vec<Option<Node>>,
    nodes: usize,
    documents: usize,
    err: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, mark: Mark, msg: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(YamlError { mark, msg: msg.into() });
        }
    }

    fn spend(&mut self, n: usize, mark: Mark) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.fail(mark, format!("the document expands to more than {MAX_NODES} nodes (an alias bomb?)"));
            return false;
        }
        true
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor == 0 {
            return;
        }
        if self.anchors.len() <= anchor {
            self.anchors.resize(anchor + 1, None);
        }
        self.anchors[anchor] = Some(node.clone());
    }

    fn open(&mut self, frame: Frame, mark: Mark) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(mark, format!("nesting deeper than {MAX_DEPTH} levels"));
            return;
        }
        self.stack.push(frame);
    }

    /// A finished node goes into its parent (or becomes the document).
    fn place(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { key, items, .. }) => match key.take() {
                None => match node.value {
                    Value::Scalar { text, .. } => *key = Some(Key { text, mark: node.mark }),
                    Value::Null => *key = Some(Key { text: String::new(), mark: node.mark }),
                    _ => {
                        let m = node.mark;
                        self.fail(m, "a mapping key must be a plain value, not a list or mapping");
                    }
                },
                Some(k) => items.push((k, node)),
            },
        }
    }

    fn close_map(&mut self, mark: Mark, anchor: usize, items: Vec<(Key, Node)>) {
        let mut out: Vec<(Key, Node)> = Vec::with_capacity(items.len());
        let mut merged: Vec<(Key, Node)> = Vec::new();
        for (k, v) in items {
            if k.text == "<<" {
                // Merge key: the mapping(s) it names give defaults; keys written here win.
                let sources = match v.value {
                    Value::Map(m) => vec![m],
                    Value::Seq(s) => {
                        let mut maps = Vec::new();
                        for n in s {
                            match n.value {
                                Value::Map(m) => maps.push(m),
                                _ => {
                                    self.fail(n.mark, "a merge key (<<) takes a mapping or a list of mappings");
                                    return;
                                }
                            }
                        }
                        maps
                    }
                    _ => {
                        self.fail(v.mark, "a merge key (<<) takes a mapping or a list of mappings");
                        return;
                    }
                };
                for m in sources {
                    for (mk, mv) in m {
                        if !merged.iter().any(|(x, _)| x.text == mk.text) {
                            merged.push((mk, mv));
                        }
                    }
                }
                continue;
            }
            if let Some((first, _)) = out.iter().find(|(x, _)| x.text == k.text) {
                let line = first.mark.line;
                self.fail(k.mark, format!("mapping key {:?} already defined at line {line}", k.text));
                return;
            }
            out.push((k, v));
        }
        for (mk, mv) in merged {
            if !out.iter().any(|(x, _)| x.text == mk.text) {
                out.push((mk, mv));
            }
        }
        let node = Node::new(mark, Value::Map(out));
        self.remember(anchor, &node);
        self.place(node);
    }
}

impl<'a> SpannedEventReceiver<'a> for Builder {
    fn on_event(&mut self, ev: Event<'a>, span: Span) {
        if self.err.is_some() {
            return;
        }
        let mark = mark_of(&span);
        match ev {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(mark, "a compose file holds one YAML document (found a second one)");
                }
                self.anchors.clear();
            }
            Event::Scalar(_, _, _, Some(t)) | Event::SequenceStart(_, Some(t)) | Event::MappingStart(_, Some(t)) if !core_tag(&t) => {
                self.fail(mark, format!("YAML tag {}{} is not supported", t.handle, t.suffix))
            }
            Event::Scalar(text, style, anchor, _) => {
                if !self.spend(1, mark) {
                    return;
                }
                let plain = style == ScalarStyle::Plain;
                let value = if plain && is_null(&text) { Value::Null } else { Value::Scalar { text: text.into_owned(), plain } };
                let node = Node::new(mark, value);
                self.remember(anchor, &node);
                self.place(node);
            }
            Event::Alias(id) => {
                let Some(Some(node)) = self.anchors.get(id) else {
                    return self.fail(mark, "alias to an unknown anchor");
                };
                let mut node = node.clone();
                if !self.spend(node.count(), mark) {
                    return;
                }
                node.mark = mark;
                self.place(node);
            }
            Event::SequenceStart(anchor, _) => {
                if self.spend(1, mark) {
                    self.open(Frame::Seq { mark, anchor, items: Vec::new() }, mark)
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.spend(1, mark) {
                    self.open(Frame::Map { mark, anchor, items: Vec::new(), key: None }, mark)
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { mark, anchor, items }) = self.stack.pop() {
                    let node = Node::new(mark, Value::Seq(items));
                    self.remember(anchor, &node);
                    self.place(node);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { mark, anchor, items, .. }) = self.stack.pop() {
                    self.close_map(mark, anchor, items);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

/// Reads one YAML document. An empty file is `Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError {
            mark: Mark { line: 1, col: 1 },
            msg: format!("the file is {} bytes, over the {MAX_BYTES} byte limit", text.len()),
        });
    }
    let mut b = Builder { stack: Vec::new(), root: None, anchors: Vec::new(), nodes: 0, documents: 0, err: None };
    let mut parser = Parser::new_from_str(text);
    let res = parser.load(&mut b, true);
    if let Some(e) = b.err {
        return Err(e);
    }
    if let Err(e) = res {
        let m = e.marker();
        return Err(YamlError { mark: Mark { line: m.line() as u32, col: m.col() as u32 + 1 }, msg: e.info().to_string() });
    }
    Ok(b.root.unwrap_or(Node::new(Mark { line: 1, col: 1 }, Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(n: &Node) -> &str {
        match &n.value {
            Value::Scalar { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn marks_for_keys_and_values() {
        let n = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        let b = n.get("b").unwrap();
        let Value::Map(m) = &b.value else { panic!() };
        assert_eq!(m[0].0.mark, Mark { line: 3, col: 3 });
        let c = b.get("c").unwrap();
        let Value::Seq(items) = &c.value else { panic!() };
        assert_eq!(items[1].value, Value::Scalar { text: "y".into(), plain: false });
        assert_eq!(items[1].mark, Mark { line: 3, col: 10 });
        assert_eq!(scalar(n.get("a").unwrap()), "1");
    }

    #[test]
    fn nulls_and_empty() {
        assert_eq!(parse("").unwrap().value, Value::Null);
        let n = parse("a:\nb: ~\nc: null\nd: ''\n").unwrap();
        for k in ["a", "b", "c"] {
            assert_eq!(n.get(k).unwrap().value, Value::Null, "{k}");
        }
        assert_eq!(n.get("d").unwrap().value, Value::Scalar { text: String::new(), plain: false });
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse("services:\n  web:\n    image: [a\n").unwrap_err();
        assert!(e.mark.line >= 3, "{e}");
        assert!(e.to_string().starts_with("line "), "{e}");
        let e = parse("a: b: c\n").unwrap_err();
        assert_eq!(e.mark.line, 1, "{e}");
    }

    #[test]
    fn duplicate_keys() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 3, col: 1 });
        assert!(e.msg.contains("\"a\" already defined at line 1"), "{e}");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = parse("x: &base {a: 1, b: 2}\ny:\n  <<: *base\n  b: 3\nz: *base\n").unwrap();
        let y = n.get("y").unwrap();
        assert_eq!(scalar(y.get("a").unwrap()), "1");
        assert_eq!(scalar(y.get("b").unwrap()), "3");
        assert_eq!(scalar(n.get("z").unwrap().get("b").unwrap()), "2");
        let n = parse("a: &a {p: 1}\nb: &b {p: 2, q: 2}\nc:\n  <<: [*a, *b]\n").unwrap();
        let c = n.get("c").unwrap();
        assert_eq!(scalar(c.get("p").unwrap()), "1");
        assert_eq!(scalar(c.get("q").unwrap()), "2");
        assert!(parse("a: &a [1]\nc:\n  <<: *a\n").is_err());
        assert!(parse("c: *nope\n").is_err());
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            y.push_str(&format!("{n}: &{n} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = n;
        }
        let e = parse(&y).unwrap_err();
        assert!(e.msg.contains("alias bomb"), "{e}");
    }

    #[test]
    fn size_and_depth_limits() {
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_BYTES));
        assert!(parse(&big).unwrap_err().msg.contains("byte limit"));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).unwrap_err().msg.contains("nesting"));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn one_document_no_tags() {
        assert!(parse("a: 1\n---\nb: 2\n").unwrap_err().msg.contains("one YAML document"));
        assert!(parse("a: !reset []\n").unwrap_err().msg.contains("!reset"));
        assert!(parse("a: !!str 1\n").is_ok());
    }

    #[test]
    fn complex_keys_rejected() {
        assert!(parse("? [a]\n: 1\n").is_err());
    }
}
