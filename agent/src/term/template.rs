//! Go's text/template, the subset Docker users write in `--format`: fields, variables, pipes,
//! `if`/`else if`/`else`, `range`, `with`, trimming markers, the builtin functions (`and`, `or`,
//! `not`, `len`, `index`, `slice`, `print`, `printf`, `println`, `eq`...`ge`) and Docker's own
//! (`json`, `join`, `split`, `lower`, `upper`, `title`, `truncate`, `pad`). Values are JSON; they
//! print as Go prints the same values (`[a b]`, `map[k:v]`, `<no value>`). Anything else
//! (`define`, `template`, `block`, methods with arguments) is an error, never a guess.
//!
//! `table` formats (`table {{.ID}}\t{{.Names}}`) print a header row and align the columns as the
//! docker CLI's tabwriter does (min width 10, padding 3).

use std::fmt::Write as _;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Res<T> = Result<T, TemplateError>;

fn perr<T>(msg: impl std::fmt::Display) -> Res<T> {
    Err(TemplateError(format!("template parsing error: template: :{msg}")))
}

fn xerr<T>(at: &str, msg: impl std::fmt::Display) -> Res<T> {
    Err(TemplateError(format!("template: executing \"\" at <{at}>: {msg}")))
}

/// What a field that the data lacks gives. Docker refuses it everywhere: its typed contexts (ps,
/// images, version) with "can't evaluate field", `inspect` (whose fallback is the raw JSON map,
/// run with missingkey=error) with "map has no entry for key". Go's own default, `<no value>`,
/// is kept for callers that want it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Error,
    MapError,
    NoValue,
}

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    /// `.A.B` on dot.
    Field(Vec<String>),
    /// `$` or `$x`, then fields.
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    /// `=` rather than `:=`.
    assign: bool,
    cmds: Vec<Vec<Arg>>,
    /// The action's text, for error messages.
    src: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// The format started with `table`.
    pub table: bool,
    pub missing: Missing,
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Ident(String),
    /// `.Name` (a lone `.` is Dot).
    Field(String),
    Dot,
    Var(String),
    Str(String),
    Char(i64),
    Num(String),
}

/// One raw piece of the template: literal text or the inside of an action.
enum Item {
    Text(String),
    Action(Vec<(Tok, bool)>, String),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits the template into text and tokenised actions, applying `{{-`/`-}}` trimming.
fn lex(src: &str) -> Res<Vec<Item>> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    let line_of = |pos: usize| src[..pos].matches('\n').count() + 1;
    while !rest.is_empty() {
        let Some(i) = rest.find("{{") else {
            let t = if trim_next { rest.trim_start_matches(is_space) } else { rest };
            items.push(Item::Text(t.to_string()));
            break;
        };
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        let mut body = &rest[i + 2..];
        if body.starts_with('-') && body[1..].starts_with(is_space) {
            text = text.trim_end_matches(is_space);
            body = &body[2..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let start = src.len() - body.len();
        let (toks, used, trim) =
            lex_action(body).map_err(|e| TemplateError(format!("template parsing error: template: :{}: {}", line_of(start), e.0)))?;
        let text = body[..used].to_string();
        rest = &body[used..];
        // Skip "}}" or " -}}".
        rest = if trim { &rest[rest.find("-}}").map_or(0, |p| p + 3)..] } else { &rest[2..] };
        trim_next = trim;
        if let Some(t) = toks {
            items.push(Item::Action(t, text.trim().to_string()));
        }
    }
    Ok(items)
}

/// One action lexed: its tokens (None for a comment), the bytes used up to the closing marker,
/// and whether that marker was ` -}}`.
type Lexed = (Option<Vec<(Tok, bool)>>, usize, bool);

/// Tokens of one action up to its closing `}}`.
fn lex_action(s: &str) -> Res<Lexed> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let mut spaced = true;
    let ends_here = |i: usize| -> Option<bool> {
        if s[i..].starts_with("}}") {
            Some(false)
        } else if s[i..].starts_with("-}}") && i > 0 && is_space(b[i - 1] as char) {
            Some(true)
        } else {
            None
        }
    };
    loop {
        if i >= b.len() {
            return Err(TemplateError("unclosed action".into()));
        }
        if let Some(trim) = ends_here(i) {
            return Ok((Some(toks), i, trim));
        }
        let c = b[i] as char;
        if is_space(c) {
            spaced = true;
            i += 1;
            continue;
        }
        if s[i..].starts_with("/*") {
            let end = s[i..].find("*/").ok_or_else(|| TemplateError("unclosed comment".into()))? + i + 2;
            let mut j = end;
            while j < b.len() && is_space(b[j] as char) {
                j += 1;
            }
            return match ends_here(j) {
                Some(trim) if toks.is_empty() => Ok((None, j, trim)),
                _ => Err(TemplateError("comment ends before closing delimiter".into())),
            };
        }
        let was_spaced = spaced;
        spaced = false;
        let ident_end = |from: usize| from + s[from..].find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len() - from);
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            ':' if s[i..].starts_with(":=") => {
                i += 2;
                Tok::Declare
            }
            '=' => {
                i += 1;
                Tok::Assign
            }
            '.' if b.get(i + 1).is_some_and(|c| (*c as char).is_alphabetic() || *c == b'_') => {
                let e = ident_end(i + 1);
                let t = Tok::Field(s[i + 1..e].to_string());
                i = e;
                t
            }
            '.' if !b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                i += 1;
                Tok::Dot
            }
            '$' => {
                let e = ident_end(i + 1);
                let t = Tok::Var(s[i..e].to_string());
                i = e;
                t
            }
            '"' => {
                let mut out = String::new();
                let mut j = i + 1;
                let chars: Vec<(usize, char)> = s[j..].char_indices().map(|(k, c)| (k + j, c)).collect();
                let mut k = 0;
                loop {
                    let Some(&(p, ch)) = chars.get(k) else { return Err(TemplateError("unterminated quoted string".into())) };
                    k += 1;
                    match ch {
                        '"' => {
                            j = p + 1;
                            break;
                        }
                        '\n' => return Err(TemplateError("unterminated quoted string".into())),
                        '\\' => {
                            let Some(&(_, e)) = chars.get(k) else { return Err(TemplateError("unterminated quoted string".into())) };
                            k += 1;
                            match e {
                                'n' => out.push('\n'),
                                't' => out.push('\t'),
                                'r' => out.push('\r'),
                                '\\' => out.push('\\'),
                                '"' => out.push('"'),
                                '\'' => out.push('\''),
                                'a' => out.push('\x07'),
                                'b' => out.push('\x08'),
                                'f' => out.push('\x0c'),
                                'v' => out.push('\x0b'),
                                'x' | 'u' | 'U' => {
                                    let n = match e {
                                        'x' => 2,
                                        'u' => 4,
                                        _ => 8,
                                    };
                                    let hex: String = chars.iter().skip(k).take(n).map(|(_, c)| *c).collect();
                                    k += n;
                                    let v = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == n);
                                    match v.and_then(char::from_u32) {
                                        Some(c) => out.push(c),
                                        None => return Err(TemplateError(format!("invalid syntax in string escape \\{e}{hex}"))),
                                    }
                                }
                                other => return Err(TemplateError(format!("invalid syntax: unknown escape \\{other}"))),
                            }
                        }
                        ch => out.push(ch),
                    }
                }
                i = j;
                Tok::Str(out)
            }
            '`' => {
                let e = s[i + 1..].find('`').ok_or_else(|| TemplateError("unterminated raw quoted string".into()))? + i + 1;
                let t = Tok::Str(s[i + 1..e].to_string());
                i = e + 1;
                t
            }
            '\'' => {
                let mut it = s[i + 1..].chars();
                let ch = match it.next() {
                    Some('\\') => match it.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('\\') => '\\',
                        Some('\'') => '\'',
                        _ => return Err(TemplateError("unsupported character constant".into())),
                    },
                    Some(c) => c,
                    None => return Err(TemplateError("unterminated character constant".into())),
                };
                let used = s.len() - (i + 1) - it.as_str().len();
                if !it.as_str().starts_with('\'') {
                    return Err(TemplateError("unterminated character constant".into()));
                }
                i += 1 + used + 1;
                Tok::Char(ch as i64)
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '+' || c == '.') && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let mut j = i + 1;
                while j < b.len() && ((b[j] as char).is_ascii_alphanumeric() || matches!(b[j], b'.' | b'_' | b'+' | b'-')) {
                    // A sign only right after an exponent marker.
                    if matches!(b[j], b'+' | b'-') && !matches!(b[j - 1], b'e' | b'E' | b'p' | b'P') {
                        break;
                    }
                    j += 1;
                }
                let t = Tok::Num(s[i..j].to_string());
                i = j;
                t
            }
            c if c.is_alphabetic() || c == '_' => {
                let e = ident_end(i);
                let t = Tok::Ident(s[i..e].to_string());
                i = e;
                t
            }
            c => return Err(TemplateError(format!("unexpected {c:?} in command"))),
        };
        toks.push((tok, was_spaced));
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

struct Parser {
    items: std::vec::IntoIter<Item>,
}

/// How a list of nodes ended.
enum Ending {
    Eof,
    End,
    Else(Vec<(Tok, bool)>, String),
}

impl Parser {
    fn list(&mut self) -> Res<(Vec<Node>, Ending)> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks, src) => {
                    let kw = match toks.first() {
                        Some((Tok::Ident(k), _)) => k.as_str(),
                        _ => "",
                    };
                    match kw {
                        "end" if toks.len() == 1 => return Ok((nodes, Ending::End)),
                        "else" => return Ok((nodes, Ending::Else(toks[1..].to_vec(), src))),
                        "if" | "range" | "with" => {
                            let kw = kw.to_string();
                            let pipe = parse_pipe(&toks[1..], &src, kw != "if")?;
                            nodes.push(self.control(&kw, pipe)?);
                        }
                        "break" if toks.len() == 1 => nodes.push(Node::Break),
                        "continue" if toks.len() == 1 => nodes.push(Node::Continue),
                        "define" | "template" | "block" => return perr(format!("1: {{{{{kw}}}}} is not supported in --format")),
                        "end" | "break" | "continue" => return perr(format!("1: unexpected {src:?}")),
                        _ => nodes.push(Node::Action(parse_pipe(&toks, &src, true)?)),
                    }
                }
            }
        }
        Ok((nodes, Ending::Eof))
    }

    /// The body and else branch of `if`/`range`/`with`; `else if`/`else with` chains nest.
    fn control(&mut self, kw: &str, pipe: Pipe) -> Res<Node> {
        let (then, end) = self.list()?;
        let els = match end {
            Ending::Eof => return perr(format!("1: unexpected EOF in {kw}")),
            Ending::End => Vec::new(),
            Ending::Else(rest, src) if rest.is_empty() => match self.list()? {
                (els, Ending::End) => els,
                (_, Ending::Else(..)) => return perr(format!("1: unexpected {{{{else}}}} after {{{{{src}}}}}")),
                (_, Ending::Eof) => return perr(format!("1: unexpected EOF in {kw}")),
            },
            Ending::Else(rest, src) => {
                let chained = match rest.first() {
                    Some((Tok::Ident(k), _)) if k == "if" || k == "with" => k.clone(),
                    _ => return perr(format!("1: unexpected {src:?} in else")),
                };
                let p = parse_pipe(&rest[1..], &src, chained == "with")?;
                // The chained control consumes the single {{end}} of the whole chain.
                vec![self.control(&chained, p)?]
            }
        };
        Ok(match kw {
            "if" => Node::If(pipe, then, els),
            "range" => Node::Range(pipe, then, els),
            _ => Node::With(pipe, then, els),
        })
    }
}

fn parse_pipe(toks: &[(Tok, bool)], src: &str, decl_ok: bool) -> Res<Pipe> {
    let mut toks = toks;
    let mut decl = Vec::new();
    let mut assign = false;
    // `$x :=`, `$x =`, `$i, $v :=`
    let split = toks.iter().position(|(t, _)| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(p) = split {
        let vars: Vec<&Tok> = toks[..p].iter().map(|(t, _)| t).collect();
        let ok = match vars.as_slice() {
            [Tok::Var(a)] => {
                decl.push(a.clone());
                true
            }
            [Tok::Var(a), Tok::Comma, Tok::Var(b)] if decl_ok => {
                decl.push(a.clone());
                decl.push(b.clone());
                true
            }
            _ => false,
        };
        if ok {
            assign = toks[p].0 == Tok::Assign;
            toks = &toks[p + 1..];
        } else if !vars.iter().any(|t| matches!(t, Tok::LParen)) {
            return perr(format!("1: unexpected {:?} in {src:?}", toks[p].0));
        }
    }
    let mut pos = 0;
    let cmds = parse_cmds(toks, &mut pos, src, false)?;
    if pos != toks.len() {
        return perr(format!("1: unexpected {:?} in operand", toks[pos].0));
    }
    if cmds.is_empty() {
        return perr(format!("1: missing value for command in {src:?}"));
    }
    Ok(Pipe { decl, assign, cmds, src: src.to_string() })
}

fn parse_cmds(toks: &[(Tok, bool)], pos: &mut usize, src: &str, in_paren: bool) -> Res<Vec<Vec<Arg>>> {
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    while *pos < toks.len() {
        match &toks[*pos].0 {
            Tok::RParen if in_paren => break,
            Tok::Pipe => {
                if cur.is_empty() {
                    return perr(format!("1: missing command before | in {src:?}"));
                }
                cmds.push(std::mem::take(&mut cur));
                *pos += 1;
            }
            _ => cur.push(parse_operand(toks, pos, src)?),
        }
    }
    if !cur.is_empty() {
        cmds.push(cur);
    } else if !cmds.is_empty() {
        return perr(format!("1: missing command after | in {src:?}"));
    }
    Ok(cmds)
}

/// Field names chained right after an operand (no space): `$x.A.B`, `(...).A`.
fn chain(toks: &[(Tok, bool)], pos: &mut usize) -> Vec<String> {
    let mut fields = Vec::new();
    while let Some((Tok::Field(f), false)) = toks.get(*pos) {
        fields.push(f.clone());
        *pos += 1;
    }
    fields
}

fn parse_operand(toks: &[(Tok, bool)], pos: &mut usize, src: &str) -> Res<Arg> {
    let (t, _) = &toks[*pos];
    *pos += 1;
    Ok(match t {
        Tok::Dot => Arg::Dot,
        Tok::Field(f) => {
            let mut fields = vec![f.clone()];
            fields.extend(chain(toks, pos));
            Arg::Field(fields)
        }
        Tok::Var(v) => Arg::Var(v.clone(), chain(toks, pos)),
        Tok::Str(s) => Arg::Str(s.clone()),
        Tok::Char(c) => Arg::Int(*c),
        Tok::Num(n) => {
            parse_number(n).ok_or_else(|| TemplateError(format!("template parsing error: template: :1: bad number syntax: {n:?}")))?
        }
        Tok::Ident(i) => match i.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break" | "continue" => {
                return perr(format!("1: unexpected <{i}> in {src:?}"))
            }
            f if FUNCS.contains(&f) => Arg::Func(f.to_string()),
            f => return perr(format!("1: function {f:?} not defined")),
        },
        Tok::LParen => {
            let cmds = parse_cmds(toks, pos, src, true)?;
            if toks.get(*pos).map(|t| &t.0) != Some(&Tok::RParen) {
                return perr(format!("1: unclosed left paren in {src:?}"));
            }
            *pos += 1;
            if cmds.is_empty() {
                return perr(format!("1: missing value for parenthesized pipeline in {src:?}"));
            }
            let p = Pipe { decl: Vec::new(), assign: false, cmds, src: src.to_string() };
            Arg::Sub(Box::new(p), chain(toks, pos))
        }
        other => return perr(format!("1: unexpected {other:?} in operand of {src:?}")),
    })
}

fn parse_number(n: &str) -> Option<Arg> {
    let clean = n.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    match int {
        Some(i) => Some(Arg::Int(if neg { -i } else { i })),
        None => berth_runtime::decimal::parse_f64(&digits).filter(|f| f.is_finite()).map(|f| Arg::Float(if neg { -f } else { f })),
    }
}

const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt", "le", "gt", "ge", "json", "join", "split",
    "lower", "upper", "title", "truncate", "pad",
];

impl Template {
    /// Parses a `--format` value as the docker CLI does: a leading `table` asks for a header row
    /// and aligned columns, and the two-character sequences `\t` and `\n` become tab and newline.
    pub fn parse(format: &str, missing: Missing) -> Res<Template> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
        let mut p = Parser { items: lex(&body)?.into_iter() };
        let (nodes, end) = p.list()?;
        match end {
            Ending::Eof => Ok(Template { nodes, table, missing }),
            Ending::End => perr("1: unexpected {{end}}"),
            Ending::Else(..) => perr("1: unexpected {{else}}"),
        }
    }

    /// The template applied to `data`.
    pub fn execute(&self, data: &Value) -> Res<String> {
        let mut st =
            State { vars: vec![("$".to_string(), Val::V(data.clone()))], out: String::new(), missing: self.missing, header: false };
        match st.walk(&self.nodes, &Val::V(data.clone()))? {
            Flow::Normal => Ok(st.out),
            _ => xerr("break", "{{break}} or {{continue}} outside {{range}}"),
        }
    }

    /// The header row of a `table` format: each field prints as its column title (Docker's
    /// header functions leave the titles as they are).
    pub fn header(&self, titles: &Value) -> Res<String> {
        let mut st =
            State { vars: vec![("$".to_string(), Val::V(titles.clone()))], out: String::new(), missing: Missing::NoValue, header: true };
        st.walk(&self.nodes, &Val::V(titles.clone()))?;
        Ok(st.out)
    }

    /// Every row, one per line; for `table`, the header first and the columns aligned.
    pub fn render_rows(&self, titles: &Value, rows: &[Value]) -> Res<String> {
        let mut text = String::new();
        if self.table {
            text.push_str(&self.header(titles)?);
            text.push('\n');
        }
        for r in rows {
            text.push_str(&self.execute(r)?);
            text.push('\n');
        }
        Ok(if self.table { tabwriter(&text, 10, 3) } else { text })
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

/// A value, or Go's "invalid value" (a key the map lacks): printed as `<no value>`.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Missing,
    V(Value),
}

impl Val {
    fn value(&self) -> Value {
        match self {
            Val::Missing => Value::Null,
            Val::V(v) => v.clone(),
        }
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

struct State {
    vars: Vec<(String, Val)>,
    out: String,
    missing: Missing,
    header: bool,
}

fn truth(v: &Val) -> bool {
    match v {
        Val::Missing => false,
        Val::V(v) => match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        },
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl State {
    fn walk(&mut self, nodes: &[Node], dot: &Val) -> Res<Flow> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&print_top(&v));
                    }
                }
                Node::If(p, then, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let f = if truth(&v) { self.walk(then, dot)? } else { self.walk(els, dot)? };
                    self.vars.truncate(mark);
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::With(p, then, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let f = if truth(&v) { self.walk(then, &v)? } else { self.walk(els, dot)? };
                    self.vars.truncate(mark);
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::Range(p, then, els) => {
                    let f = self.range(p, then, els, dot)?;
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, p: &Pipe, then: &[Node], els: &[Node], dot: &Val) -> Res<Flow> {
        let mark = self.vars.len();
        // The range's variables are set per element, not from the pipeline's value.
        let inner = Pipe { decl: Vec::new(), ..p.clone() };
        let v = self.pipe(&inner, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Val::Missing | Val::V(Value::Null) => Vec::new(),
            Val::V(Value::Array(a)) => a.iter().enumerate().map(|(i, x)| (Value::from(i), x.clone())).collect(),
            Val::V(Value::Object(o)) => o.iter().map(|(k, x)| (Value::String(k.clone()), x.clone())).collect(),
            Val::V(other) => return xerr(&p.src, format!("range can't iterate over {}", print_value(other))),
        };
        if items.is_empty() {
            let f = self.walk(els, dot)?;
            self.vars.truncate(mark);
            return Ok(f);
        }
        for (k, x) in items {
            match p.decl.as_slice() {
                [v] => self.vars.push((v.clone(), Val::V(x.clone()))),
                [i, v] => {
                    self.vars.push((i.clone(), Val::V(k)));
                    self.vars.push((v.clone(), Val::V(x.clone())));
                }
                _ => {}
            }
            let f = self.walk(then, &Val::V(x))?;
            self.vars.truncate(mark);
            if matches!(f, Flow::Break) {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    fn pipe(&mut self, p: &Pipe, dot: &Val) -> Res<Val> {
        let mut prev: Option<Val> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev, &p.src)?);
        }
        let v = prev.unwrap_or(Val::Missing);
        for name in &p.decl {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return xerr(&p.src, format!("undefined variable: {name}")),
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, prev: Option<Val>, src: &str) -> Res<Val> {
        if let Arg::Func(f) = &cmd[0] {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.arg(a, dot, src)?);
            }
            args.extend(prev);
            return self.call(f, args, src);
        }
        if cmd.len() > 1 || prev.is_some() {
            return xerr(src, format!("can't give argument to non-function {}", describe(&cmd[0])));
        }
        self.arg(&cmd[0], dot, src)
    }

    fn arg(&mut self, a: &Arg, dot: &Val, src: &str) -> Res<Val> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Field(f) => self.fields(dot.clone(), f, src)?,
            Arg::Var(name, f) => {
                let v = match self.vars.iter().rev().find(|(n, _)| n == name) {
                    Some((_, v)) => v.clone(),
                    None => return perr(format!("1: undefined variable {name:?}")),
                };
                self.fields(v, f, src)?
            }
            Arg::Func(f) => self.call(f, Vec::new(), src)?,
            Arg::Str(s) => Val::V(Value::String(s.clone())),
            Arg::Int(i) => Val::V(Value::from(*i)),
            Arg::Float(x) => Val::V(serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number)),
            Arg::Bool(b) => Val::V(Value::Bool(*b)),
            Arg::Nil => return xerr(src, "nil is not a command"),
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, f, src)?
            }
        })
    }

    fn fields(&self, mut v: Val, names: &[String], src: &str) -> Res<Val> {
        for name in names {
            v = match v {
                Val::Missing if self.missing == Missing::NoValue => Val::Missing,
                Val::Missing => return xerr(src, format!("nil data; no entry for key {name:?}")),
                Val::V(Value::Object(o)) => match o.get(name) {
                    Some(x) => Val::V(x.clone()),
                    None if self.missing == Missing::NoValue || self.header => Val::Missing,
                    None if self.missing == Missing::MapError => return xerr(src, format!("map has no entry for key {name:?}")),
                    None => return xerr(src, format!("can't evaluate field {name}")),
                },
                Val::V(Value::Null) => return xerr(src, format!("nil pointer evaluating interface {{}}.{name}")),
                Val::V(other) => return xerr(src, format!("can't evaluate field {name} in type {}", type_name(&other))),
            };
        }
        Ok(v)
    }

    fn call(&mut self, f: &str, args: Vec<Val>, src: &str) -> Res<Val> {
        let want = |n: usize| -> Res<()> {
            if args.len() != n {
                return xerr(src, format!("wrong number of args for {f}: want {n} got {}", args.len()));
            }
            Ok(())
        };
        let string = |v: &Val| -> Res<String> {
            match v.value() {
                Value::String(s) => Ok(s),
                other => xerr(src, format!("wrong type for value; expected string; got {}", type_name(&other))),
            }
        };
        let int = |v: &Val| -> Res<i64> {
            match v.value() {
                Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
                other => xerr(src, format!("wrong type for value; expected int; got {}", type_name(&other))),
            }
        };
        // Docker's header functions print the column title unchanged.
        if self.header && matches!(f, "json" | "join" | "split" | "lower" | "upper" | "title" | "truncate" | "pad") {
            return Ok(args.first().cloned().unwrap_or(Val::Missing));
        }
        let s = |x: String| Ok(Val::V(Value::String(x)));
        match f {
            "and" | "or" => {
                if args.is_empty() {
                    return xerr(src, format!("wrong number of args for {f}: want at least 1 got 0"));
                }
                for a in &args {
                    if truth(a) == (f == "or") {
                        return Ok(a.clone());
                    }
                }
                Ok(args.last().cloned().unwrap_or(Val::Missing))
            }
            "not" => {
                want(1)?;
                Ok(Val::V(Value::Bool(!truth(&args[0]))))
            }
            "len" => {
                want(1)?;
                match args[0].value() {
                    Value::String(x) => Ok(Val::V(Value::from(x.len()))),
                    Value::Array(a) => Ok(Val::V(Value::from(a.len()))),
                    Value::Object(o) => Ok(Val::V(Value::from(o.len()))),
                    other => xerr(src, format!("error calling len: len of type {}", type_name(&other))),
                }
            }
            "index" => {
                let Some((first, keys)) = args.split_first() else {
                    return xerr(src, "wrong number of args for index: want at least 1 got 0");
                };
                let mut v = first.value();
                for k in keys {
                    v = match (&v, k.value()) {
                        (Value::Array(a), Value::Number(n)) => {
                            let i = n.as_i64().unwrap_or(-1);
                            match usize::try_from(i).ok().and_then(|i| a.get(i)) {
                                Some(x) => x.clone(),
                                None => return xerr(src, format!("error calling index: index out of range: {i}")),
                            }
                        }
                        (Value::String(st), Value::Number(n)) => {
                            let i = n.as_i64().unwrap_or(-1);
                            match usize::try_from(i).ok().and_then(|i| st.as_bytes().get(i)) {
                                Some(b) => Value::from(*b),
                                None => return xerr(src, format!("error calling index: index out of range: {i}")),
                            }
                        }
                        // A missing key is the map's zero value: "" for Docker's string maps
                        // (labels, options).
                        (Value::Object(o), Value::String(key)) => match o.get(&key) {
                            Some(x) => x.clone(),
                            None if o.values().all(Value::is_string) => Value::String(String::new()),
                            None => Value::Null,
                        },
                        (Value::Null, _) => return xerr(src, "error calling index: index of untyped nil"),
                        (x, key) => {
                            return xerr(src, format!("error calling index: cannot index {} with {}", type_name(x), type_name(&key)))
                        }
                    };
                }
                Ok(Val::V(v))
            }
            "slice" => {
                let Some((first, idx)) = args.split_first() else {
                    return xerr(src, "wrong number of args for slice: want at least 1 got 0");
                };
                let idx = idx.iter().map(int).collect::<Res<Vec<i64>>>()?;
                let v = first.value();
                let len = match &v {
                    Value::String(x) => x.len(),
                    Value::Array(a) => a.len(),
                    other => return xerr(src, format!("error calling slice: can't slice item of type {}", type_name(other))),
                };
                let lo = idx.first().copied().unwrap_or(0);
                let hi = idx.get(1).copied().unwrap_or(len as i64);
                if idx.len() > 2 || lo < 0 || hi < lo || hi as usize > len {
                    return xerr(src, format!("error calling slice: invalid slice index: {lo} > {hi}"));
                }
                Ok(Val::V(match v {
                    Value::String(x) => Value::String(x.get(lo as usize..hi as usize).unwrap_or_default().to_string()),
                    Value::Array(a) => Value::Array(a[lo as usize..hi as usize].to_vec()),
                    _ => Value::Null,
                }))
            }
            "print" => s(go_sprint(&args)),
            "println" => s(args.iter().map(|a| print_value(&a.value())).collect::<Vec<_>>().join(" ") + "\n"),
            "printf" => {
                let Some((fmt, rest)) = args.split_first() else {
                    return xerr(src, "wrong number of args for printf: want at least 1 got 0");
                };
                let fmt = string(fmt)?;
                let vals: Vec<Value> = rest.iter().map(Val::value).collect();
                s(sprintf(&fmt, &vals))
            }
            "eq" => {
                if args.len() < 2 {
                    return xerr(src, "missing argument for comparison");
                }
                let a = args[0].value();
                for b in &args[1..] {
                    if compare(&a, &b.value(), src)? == Some(std::cmp::Ordering::Equal) {
                        return Ok(Val::V(Value::Bool(true)));
                    }
                }
                Ok(Val::V(Value::Bool(false)))
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let (a, b) = (args[0].value(), args[1].value());
                let ord = compare(&a, &b, src)?;
                if f != "ne" && (matches!(a, Value::Bool(_) | Value::Null) || ord.is_none()) {
                    return xerr(src, format!("error calling {f}: invalid type for comparison"));
                }
                use std::cmp::Ordering::*;
                let r = match f {
                    "ne" => ord != Some(Equal),
                    "lt" => ord == Some(Less),
                    "le" => ord != Some(Greater),
                    "gt" => ord == Some(Greater),
                    _ => ord != Some(Less),
                };
                Ok(Val::V(Value::Bool(r)))
            }
            "json" => {
                want(1)?;
                s(go_json(&args[0].value()))
            }
            "join" => {
                want(2)?;
                let sep = string(&args[1])?;
                match args[0].value() {
                    Value::Array(a) => {
                        let parts = a
                            .iter()
                            .map(|x| match x {
                                Value::String(st) => Ok(st.clone()),
                                other => xerr(src, format!("wrong type for value; expected []string; got {}", type_name(other))),
                            })
                            .collect::<Res<Vec<_>>>()?;
                        s(parts.join(&sep))
                    }
                    Value::Null => s(String::new()),
                    other => xerr(src, format!("wrong type for value; expected []string; got {}", type_name(&other))),
                }
            }
            "split" => {
                want(2)?;
                let (x, sep) = (string(&args[0])?, string(&args[1])?);
                let parts: Vec<Value> = if sep.is_empty() {
                    x.chars().map(|c| Value::String(c.to_string())).collect()
                } else {
                    x.split(sep.as_str()).map(|p| Value::String(p.to_string())).collect()
                };
                Ok(Val::V(Value::Array(parts)))
            }
            "lower" => {
                want(1)?;
                s(string(&args[0])?.to_lowercase())
            }
            "upper" => {
                want(1)?;
                s(string(&args[0])?.to_uppercase())
            }
            "title" => {
                want(1)?;
                s(go_title(&string(&args[0])?))
            }
            "truncate" => {
                want(2)?;
                let (x, n) = (string(&args[0])?, int(&args[1])?);
                // Docker truncates bytes (a cut inside a character prints as Go prints it).
                if (x.len() as i64) < n || n < 0 {
                    s(x)
                } else {
                    s(String::from_utf8_lossy(&x.as_bytes()[..n as usize]).into_owned())
                }
            }
            "pad" => {
                want(3)?;
                let (x, pre, post) = (string(&args[0])?, int(&args[1])?, int(&args[2])?);
                if x.is_empty() {
                    return s(x);
                }
                s(format!("{}{x}{}", " ".repeat(pre.max(0) as usize), " ".repeat(post.max(0) as usize)))
            }
            other => xerr(src, format!("function {other:?} not supported")),
        }
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Dot => ".".into(),
        Arg::Field(f) => format!(".{}", f.join(".")),
        Arg::Var(v, f) => f.iter().fold(v.clone(), |acc, x| format!("{acc}.{x}")),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => berth_runtime::decimal::display(*f),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Func(f) => f.clone(),
        Arg::Sub(..) => "(...)".into(),
    }
}

fn compare(a: &Value, b: &Value, src: &str) -> Res<Option<std::cmp::Ordering>> {
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64().zip(y.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            return xerr(src, "error calling eq: non-comparable type")
        }
        _ => return xerr(src, "error calling eq: incompatible types for comparison"),
    })
}

// ---------------------------------------------------------------------------------------------
// Go's printing of values

/// An action's value as text/template prints it: a key the map lacks is `<no value>`; a null is
/// what Docker's typed values print for it, a nil pointer's `<nil>` (`{{.State.Health}}`).
fn print_top(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".into(),
        Val::V(v) => print_value(v),
    }
}

/// fmt's `%v`.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print_value).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!("map[{}]", o.iter().map(|(k, x)| format!("{k}:{}", print_value(x))).collect::<Vec<_>>().join(" ")),
    }
}

fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    go_float_g(n.as_f64().unwrap_or(0.0), None)
}

/// strconv's `%g` (shortest digits when `prec` is None): the exponent form when the exponent is
/// below -4 or at least the precision, 6 for the shortest form (so `%v` of 1e6 is `1e+06`).
fn go_float_g(f: f64, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let e = match prec {
        None => berth_runtime::decimal::sci(f, None),
        Some(p) => berth_runtime::decimal::sci(f, Some(p.max(1) - 1)),
    };
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    if prec.is_some() {
        while digits.len() > 1 && digits.ends_with('0') {
            digits.pop();
        }
    }
    let eprec = match prec {
        None => 6,
        Some(p) => p.max(1) as i32,
    };
    let sign = if neg { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{}{rest}e{es}{:02}", &digits[..1], exp.abs());
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

/// fmt.Sprint: a space between operands when neither is a string.
fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    let mut prev_string = true;
    for (i, a) in args.iter().enumerate() {
        let v = a.value();
        let is_string = v.is_string();
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        out.push_str(&print_value(&v));
        prev_string = is_string;
    }
    out
}

/// Docker's `json` function: encoding/json without HTML escaping, no trailing newline.
fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    // encoding/json escapes these two line terminators even with HTML escaping off.
    s.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029")
}

/// strings.Title: the first letter of each word in upper case.
fn go_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        out.extend(if prev_sep { c.to_uppercase().collect::<Vec<_>>() } else { vec![c] });
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && !c.is_alphabetic() && c.is_whitespace()
        };
    }
    out
}

/// strconv.Quote.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, sp: &Spec, numeric: bool) -> String {
    let Some(w) = sp.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    if sp.minus {
        return s + &" ".repeat(w - n);
    }
    if sp.zero && numeric {
        let (sign, digits) = if s.starts_with(['-', '+']) { s.split_at(1) } else { ("", s.as_str()) };
        return format!("{sign}{}{digits}", "0".repeat(w - n));
    }
    " ".repeat(w - n) + &s
}

/// Go's "%!v(type=value)" for a verb that does not fit the operand.
fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Null => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", type_name(v), print_value(v)),
    }
}

fn fmt_one(verb: char, sp: &Spec, v: &Value) -> String {
    let int = v.as_i64().filter(|_| !v.as_number().is_some_and(|n| n.is_f64()));
    let signed = |s: String, neg: bool| -> String {
        if neg {
            s
        } else if sp.plus {
            format!("+{s}")
        } else if sp.space {
            format!(" {s}")
        } else {
            s
        }
    };
    match (verb, v) {
        ('v', Value::Number(n)) if n.is_f64() => {
            pad(signed(go_float_g(n.as_f64().unwrap_or(0.0), sp.prec), n.as_f64().unwrap_or(0.0) < 0.0), sp, true)
        }
        ('v', Value::Number(_)) | ('d', Value::Number(_)) if int.is_some() || v.as_u64().is_some() => {
            let mut s = match int {
                Some(i) => i.unsigned_abs().to_string(),
                None => v.as_u64().unwrap_or(0).to_string(),
            };
            if let Some(p) = sp.prec {
                if s.len() < p {
                    s = "0".repeat(p - s.len()) + &s;
                }
            }
            let neg = int.is_some_and(|i| i < 0);
            pad(signed(if neg { format!("-{s}") } else { s }, neg), sp, sp.prec.is_none())
        }
        ('v', Value::Array(a)) | ('s', Value::Array(a)) | ('d', Value::Array(a)) | ('q', Value::Array(a)) | ('x', Value::Array(a)) => {
            let inner = Spec { width: sp.width, prec: sp.prec, ..*sp };
            format!("[{}]", a.iter().map(|x| fmt_one(verb, &inner, x)).collect::<Vec<_>>().join(" "))
        }
        ('v', Value::Object(o)) | ('s', Value::Object(o)) | ('d', Value::Object(o)) => {
            let inner = Spec { ..*sp };
            format!(
                "map[{}]",
                o.iter()
                    .map(|(k, x)| format!("{}:{}", fmt_one(verb, &inner, &Value::String(k.clone())), fmt_one(verb, &inner, x)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        ('v', Value::Null) => pad("<nil>".into(), sp, false),
        ('v', Value::Bool(b)) | ('t', Value::Bool(b)) => pad(b.to_string(), sp, false),
        ('v', Value::String(s)) | ('s', Value::String(s)) => {
            let s = match sp.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            pad(s, sp, false)
        }
        ('q', Value::String(s)) => {
            let s: String = match sp.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            pad(if sp.sharp && !s.contains('`') { format!("`{s}`") } else { go_quote(&s) }, sp, false)
        }
        ('q', Value::Number(_)) if int.is_some() => {
            let c = int.and_then(|i| u32::try_from(i).ok()).and_then(char::from_u32).unwrap_or('\u{fffd}');
            pad(if c == '\'' { "'\\''".into() } else { format!("'{}'", go_quote(&c.to_string()).trim_matches('"')) }, sp, false)
        }
        ('c', Value::Number(_)) if int.is_some() => {
            pad(int.and_then(|i| u32::try_from(i).ok()).and_then(char::from_u32).unwrap_or('\u{fffd}').to_string(), sp, false)
        }
        ('x' | 'X', Value::String(s)) => {
            let bytes = s.as_bytes();
            let bytes = match sp.prec {
                Some(p) => &bytes[..p.min(bytes.len())],
                None => bytes,
            };
            let h: String = bytes.iter().map(|b| if verb == 'x' { format!("{b:02x}") } else { format!("{b:02X}") }).collect();
            pad(if sp.sharp { format!("0{verb}{h}") } else { h }, sp, false)
        }
        ('x' | 'X' | 'o' | 'b', Value::Number(_)) if int.is_some() => {
            let i = int.unwrap_or(0);
            let a = i.unsigned_abs();
            let body = match verb {
                'x' => format!("{a:x}"),
                'X' => format!("{a:X}"),
                'o' => format!("{a:o}"),
                _ => format!("{a:b}"),
            };
            let prefix = if sp.sharp {
                match verb {
                    'x' => "0x",
                    'X' => "0X",
                    'o' => "0",
                    _ => "",
                }
            } else {
                ""
            };
            pad(signed(format!("{}{prefix}{body}", if i < 0 { "-" } else { "" }), i < 0), sp, true)
        }
        ('f' | 'F' | 'e' | 'g', Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            let s = match verb {
                'f' | 'F' => berth_runtime::decimal::fixed(f, sp.prec.unwrap_or(6)),
                'e' => {
                    let s = berth_runtime::decimal::sci(f, Some(sp.prec.unwrap_or(6)));
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let e: i32 = e.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
                }
                _ => go_float_g(f, sp.prec),
            };
            pad(signed(s, f < 0.0), sp, true)
        }
        (verb, v) => bad_verb(verb, v),
    }
}

/// fmt.Sprintf for the verbs Docker users write; Go's `%!v(...)` notes for mismatches.
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut sp = Spec { minus: false, plus: false, zero: false, space: false, sharp: false, width: None, prec: None };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => sp.minus = true,
                '+' => sp.plus = true,
                '0' => sp.zero = true,
                ' ' => sp.space = true,
                '#' => sp.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        sp.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            sp.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
            Some(v) => {
                out.push_str(&fmt_one(verb, &sp, v));
                next += 1;
            }
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| match v {
                Value::Null => "<nil>".to_string(),
                v => format!("{}={}", type_name(v), print_value(v)),
            })
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Go's text/tabwriter (no flags, padding with spaces), as the docker CLI sets it up.

/// Aligns tab-terminated cells: a column is as wide as its widest cell plus `padding`, at least
/// `minwidth`, over each block of consecutive lines that have that column. The last cell of a
/// line is not part of any column.
pub fn tabwriter(text: &str, minwidth: usize, padding: usize) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // The text after the last newline is a line only when it is not empty.
    if lines.last().is_some_and(|l| l.len() == 1 && l[0].is_empty()) {
        lines.pop();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, minwidth, padding, &mut out);
    if text.ends_with('\n') || text.is_empty() {
        out
    } else {
        out.pop();
        out
    }
}

fn format_block(lines: &[Vec<&str>], mut line0: usize, line1: usize, widths: &mut Vec<usize>, minw: usize, pad: usize, out: &mut String) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minw;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + pad);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, minw, pad, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let w = widths.get(j).copied().unwrap_or(0);
                out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count())));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, v: &Value) -> String {
        Template::parse(t, Missing::NoValue).and_then(|t| t.execute(v)).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn strict(t: &str, v: &Value) -> Res<String> {
        Template::parse(t, Missing::Error)?.execute(v)
    }

    fn data() -> Value {
        json!({
            "Id": "4f66ad9a0b2e7c1d3e5f", "Name": "/web", "Count": 3, "Ratio": 0.5, "Big": 1000000.0, "Empty": "",
            "Config": {"Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}, "Tty": false, "Healthcheck": null},
            "State": {"Status": "running", "Running": true, "Pid": 42},
            "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data"}, {"Type": "bind", "Source": "/etc/os-release", "Destination": "/os-release"}]
        })
    }

    // Expected outputs were checked against Go 1.19's text/template with Docker's function map on
    // the same data; where Go's JSON decoding differs from Docker's typed values (numbers are
    // float64 there, int here; nulls are nil pointers here, `<nil>`), the typed output is used, as
    // dockerd 20.10.24 printed it for inspect.
    #[test]
    fn fields_and_printing() {
        let d = data();
        assert_eq!(run("{{.Id}}", &d), "4f66ad9a0b2e7c1d3e5f");
        assert_eq!(run("{{.Config.Cmd}}", &d), "[sh -c echo hi]");
        assert_eq!(run("{{.Config.Labels}}", &d), "map[a:1 b:2]");
        assert_eq!(run("{{.State.Running}} {{.State.Pid}} {{.Ratio}} {{.Big}}", &d), "true 42 0.5 1e+06");
        assert_eq!(run("{{.Nope}}", &d), "<no value>");
        assert_eq!(run("{{.Nope.Deeper}}", &d), "<no value>");
        assert_eq!(run("{{.Config.Healthcheck}}", &d), "<nil>");
        assert!(Template::parse("{{.Config.Healthcheck.Test}}", Missing::NoValue).unwrap().execute(&d).is_err());
        assert_eq!(run("{{.}}", &json!(["a", null, 1])), "[a <nil> 1]");
        assert_eq!(run("{{$}}", &json!({"a": {"b": [1, 2]}})), "map[a:map[b:[1 2]]]");
        assert_eq!(run("{{ .Name }}", &d), "/web");
        assert_eq!(run("{{(index .Mounts 0).Name}}", &d), "data");
    }

    #[test]
    fn the_issue_s_template() {
        assert_eq!(run(r#"{{.Id | printf "%.12s"}}"#, &data()), "4f66ad9a0b2e");
        assert_eq!(run(r#"{{printf "%.12s" .Id}}"#, &data()), "4f66ad9a0b2e");
    }

    #[test]
    fn strict_mode_refuses_unknown_fields() {
        let e = strict("{{.Nope}}", &data()).unwrap_err();
        assert!(e.0.contains("can't evaluate field Nope"), "{e}");
        assert_eq!(strict("{{.State.Status}}", &data()).unwrap(), "running");
        let e = Template::parse("{{.Nope}}", Missing::MapError).unwrap().execute(&data()).unwrap_err();
        assert!(e.0.ends_with("map has no entry for key \"Nope\""), "{e}");
        assert_eq!(strict("{{index .Config.Labels \"zz\"}}", &data()).unwrap(), "");
    }

    #[test]
    fn control_flow() {
        let d = data();
        assert_eq!(run("{{range .Config.Env}}[{{.}}]{{end}}", &d), "[A=1][B=2]");
        assert_eq!(run("{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}", &d), "0=A=1 1=B=2 ");
        assert_eq!(run("{{range $e := .Config.Env}}{{$e}}{{$.Name}},{{end}}", &d), "A=1/web,B=2/web,");
        assert_eq!(run("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", &d), "a=1;b=2;");
        assert_eq!(run("{{range .Missing}}x{{else}}none{{end}}", &d), "none");
        assert_eq!(
            run("{{range .Mounts}}{{if eq .Type \"bind\"}}{{.Source}}{{else if eq .Type \"volume\"}}{{.Name}}{{else}}?{{end}} {{end}}", &d),
            "data /etc/os-release "
        );
        assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}", &d), "up");
        assert_eq!(run("{{if .Config.Tty}}tty{{end}}", &d), "");
        assert_eq!(run("{{with .State}}{{.Status}}{{end}}", &d), "running");
        assert_eq!(run("{{with .Empty}}x{{else}}empty{{end}}", &d), "empty");
        assert_eq!(run("{{$n := .Name}}{{range .Config.Env}}{{$n}}{{end}}", &d), "/web/web");
        assert_eq!(run("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", &d), "2");
        assert_eq!(run("{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}", &d), "A=1");
        assert_eq!(run("{{range .Config.Env}}{{if eq . \"A=1\"}}{{continue}}{{end}}{{.}}{{end}}", &d), "B=2");
    }

    #[test]
    fn trimming_and_comments() {
        let d = data();
        assert_eq!(run("a  {{- .Name -}}  \n b", &d), "a/webb");
        assert_eq!(run("{{range .Config.Env -}}\n  {{.}}\n{{- end}}", &d), "A=1B=2");
        assert_eq!(run("x{{/* a comment */}}y", &d), "xy");
        assert_eq!(run("x {{- /* a comment */ -}} y", &d), "xy");
        assert_eq!(run("{{-3}}", &d), "-3");
    }

    #[test]
    fn builtins() {
        let d = data();
        assert_eq!(run("{{len .Config.Env}} {{len .Name}} {{len .Config.Labels}}", &d), "2 4 2");
        assert_eq!(run("{{index .Config.Env 1}} {{index .Config.Labels \"a\"}}", &d), "B=2 1");
        assert_eq!(run("{{and .State.Running .Name}} {{or .Empty \"dflt\"}} {{not .Config.Tty}}", &d), "/web dflt true");
        assert_eq!(
            run("{{eq .State.Pid 42}} {{ne .Name \"/web\"}} {{lt 1 2}} {{ge .Count 3}} {{gt \"b\" \"a\"}} {{le 2 1}}", &d),
            "true false true true true false"
        );
        assert_eq!(run("{{eq .State.Status \"exited\" \"running\"}}", &d), "true");
        assert_eq!(run("{{print 1 2 \"a\" 3}}", &d), "1 2a3");
        assert_eq!(run("{{println .Name .Count}}", &d), "/web 3\n");
        assert_eq!(run("{{slice .Name 1 3}}", &d), "we");
        assert!(Template::parse("{{index .Config.Env 5}}", Missing::NoValue).unwrap().execute(&d).is_err());
        assert!(Template::parse("{{lt .Name 1}}", Missing::NoValue).unwrap().execute(&d).is_err());
    }

    #[test]
    fn printf_verbs() {
        let d = data();
        assert_eq!(run(r#"{{printf "%s|%d|%v|%q" .Name .Count .Config.Cmd .Name}}"#, &d), r#"/web|3|[sh -c echo hi]|"/web""#);
        assert_eq!(
            run(r#"{{printf "[%-8s][%8s][%.2s][%5.1f][%05d][%x][%X][%t]" "ab" "cd" "xyz" 3.14159 42 "hi" 255 true}}"#, &d),
            "[ab      ][      cd][xy][  3.1][00042][6869][FF][true]"
        );
        assert_eq!(run(r#"{{printf "%d" .Name}}"#, &d), "%!d(string=/web)");
        assert_eq!(run(r#"{{printf "%s %s" .Name}}"#, &d), "/web %!s(MISSING)");
        assert_eq!(run(r#"{{printf "%s" .Name 1}}"#, &d), "/web%!(EXTRA int=1)");
        assert_eq!(run(r#"{{printf "%q" "a\tb\"c"}}"#, &d), r#""a\tb\"c""#);
        assert_eq!(run(r#"{{printf "100%%"}}"#, &d), "100%");
        assert_eq!(run(r#"{{printf "%v %v %v" 1.5 1e21 0.00001}}"#, &d), "1.5 1e+21 1e-05");
        assert_eq!(run(r#"{{printf "%e %g" 1234.5678 1234.5678}}"#, &d), "1.234568e+03 1234.5678");
    }

    #[test]
    fn docker_functions() {
        let d = data();
        assert_eq!(run("{{json .Config.Cmd}}", &d), r#"["sh","-c","echo hi"]"#);
        assert_eq!(run("{{json .State}}", &d), r#"{"Pid":42,"Running":true,"Status":"running"}"#);
        assert_eq!(run("{{json \"<a&b>\"}}", &d), r#""<a&b>""#);
        assert_eq!(run("{{join .Config.Env \",\"}}", &d), "A=1,B=2");
        assert_eq!(run("{{split \"a:b:c\" \":\"}}", &d), "[a b c]");
        assert_eq!(run("{{index (split \"a:b:c\" \":\") 2}}", &d), "c");
        assert_eq!(run("{{lower \"AbC\"}} {{upper .State.Status}} {{title \"hello wide-world\"}}", &d), "abc RUNNING Hello Wide-World");
        assert_eq!(run("{{truncate .Id 5}} {{truncate \"ab\" 5}}", &d), "4f66a ab");
        assert_eq!(run("[{{pad .Name 2 1}}][{{pad .Empty 2 1}}]", &d), "[  /web ][]");
        assert_eq!(run("{{.State.Status | upper | printf \"<%s>\"}}", &d), "<RUNNING>");
    }

    #[test]
    fn refused_not_guessed() {
        for t in [
            "{{template \"x\"}}",
            "{{define \"x\"}}y{{end}}",
            "{{nosuchfunc .Id}}",
            "{{.Id",
            "{{if .Id}}x",
            "{{end}}",
            "{{\"unterminated}}",
            "{{.Id | }}",
            "{{range .Config.Env}}{{else}}{{else}}{{end}}",
            "{{$undefined}}",
        ] {
            assert!(Template::parse(t, Missing::NoValue).and_then(|p| p.execute(&data())).is_err(), "{t} should fail");
        }
        assert!(Template::parse("{{.Id 1}}", Missing::NoValue).unwrap().execute(&data()).is_err());
        assert!(Template::parse("{{range .Count}}x{{end}}", Missing::NoValue).unwrap().execute(&data()).is_err());
    }

    #[test]
    fn table_header_and_alignment() {
        let t = Template::parse("table {{.ID}}\\t{{.Image}}\\t{{.Names}}", Missing::Error).unwrap();
        assert!(t.table);
        let titles = json!({"ID": "CONTAINER ID", "Image": "IMAGE", "Names": "NAMES"});
        let rows = vec![
            json!({"ID": "4f66ad9a0b2e", "Image": "busybox", "Names": "web"}),
            json!({"ID": "0123", "Image": "alpine:3.19", "Names": "db"}),
        ];
        assert_eq!(
            t.render_rows(&titles, &rows).unwrap(),
            "CONTAINER ID   IMAGE         NAMES\n4f66ad9a0b2e   busybox       web\n0123           alpine:3.19   db\n"
        );
        // Without `table`: no header, the tabs stay tabs.
        let t = Template::parse("{{.ID}}\\t{{.Names}}", Missing::Error).unwrap();
        assert_eq!(t.render_rows(&titles, &rows).unwrap(), "4f66ad9a0b2e\tweb\n0123\tdb\n");
        // Header functions leave titles alone.
        let t = Template::parse("table {{.Names | upper}}\\t{{json .ID}}", Missing::Error).unwrap();
        assert_eq!(t.header(&titles).unwrap(), "NAMES\tCONTAINER ID");
    }

    #[test]
    fn tabwriter_as_go() {
        // minwidth 10 pads short columns; a line without tabs breaks the column block.
        assert_eq!(tabwriter("a\tb\tc\nlonger cell\tx\ty\n", 10, 3), "a             b         c\nlonger cell   x         y\n");
        assert_eq!(tabwriter("a\tb\nsingle\nccc\td\n", 10, 3), "a         b\nsingle\nccc       d\n");
        assert_eq!(tabwriter("x\t\ty\n\tz\n", 10, 3), "x                   y\n          z\n");
    }
}
