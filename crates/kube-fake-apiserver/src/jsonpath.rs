//! The subset of Kubernetes JSONPath (k8s.io/client-go/util/jsonpath) that CRD printer columns
//! use: `.field`, `['field']`, `[n]` (negative from the end), `[*]`, `.*` and filters
//! `[?(@.path OP literal)]` / `[?(@.path)]`. Missing keys give no result rather than an error,
//! as the apiextensions table convertor turns on `AllowMissingKeys`.

use serde_json::Value;

/// One step of a parsed path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

/// `[?(@.left OP right)]`; `right` is None for an existence test `[?(@.left)]`.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Step>,
    op: Option<(Op, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed path, ready to evaluate against objects.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a printer column's `jsonPath` (with or without the surrounding `{}`).
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let inner = path.trim();
        let inner = inner
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(inner);
        let mut p = Parser {
            s: inner.as_bytes(),
            i: 0,
        };
        let steps = p.steps(false)?;
        if p.i != p.s.len() {
            return Err(format!("unexpected {:?} in {path:?}", &inner[p.i..]));
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval(&self.steps, root)
    }
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::Index(i) => {
                    if let Some(items) = v.as_array() {
                        let at = if *i < 0 { items.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(at).ok().and_then(|at| items.get(at)));
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(f) => {
                    if let Some(items) = v.as_array() {
                        next.extend(items.iter().filter(|item| f.matches(item)));
                    }
                }
            }
        }
        current = next;
    }
    current
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let found = eval(&self.left, item);
        match &self.op {
            None => !found.is_empty(),
            Some((op, right)) => found.iter().any(|left| compare(left, *op, right)),
        }
    }
}

fn compare(left: &Value, op: Op, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, o) => o == Some(Ordering::Equal),
        (Op::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// Steps until the end, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                b'.' => {
                    self.i += 1;
                    if self.peek() == Some(b'.') {
                        return Err("recursive descent (..) is not supported".into());
                    }
                    if self.eat(b'*') {
                        steps.push(Step::Wildcard);
                    } else {
                        let name = self.field_name();
                        if !name.is_empty() {
                            steps.push(Step::Field(name));
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    steps.push(self.bracket()?);
                }
                _ if in_filter => break,
                _ => return Err(format!("unexpected character {:?}", c as char)),
            }
        }
        Ok(steps)
    }

    fn field_name(&mut self) -> String {
        let mut name = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                b'\\' if self.s.get(self.i + 1) == Some(&b'.') => {
                    name.push(b'.');
                    self.i += 2;
                }
                b'.' | b'[' | b' ' | b'=' | b'!' | b'<' | b'>' | b')' => break,
                _ => {
                    name.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8_lossy(&name).into_owned()
    }

    fn bracket(&mut self) -> Result<Step, String> {
        self.skip_spaces();
        let step = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Step::Wildcard
            }
            Some(b'\'' | b'"') => Step::Field(self.quoted()?),
            Some(b'?') => {
                self.i += 1;
                self.filter()?
            }
            _ => {
                let start = self.i;
                while self.peek().is_some_and(|c| c == b'-' || c.is_ascii_digit()) {
                    self.i += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                Step::Index(text.parse().map_err(|_| format!("unsupported subscript {text:?}"))?)
            }
        };
        self.skip_spaces();
        if !self.eat(b']') {
            return Err("missing ]".into());
        }
        Ok(step)
    }

    fn quoted(&mut self) -> Result<String, String> {
        let Some(quote) = self.peek() else {
            return Err("missing quote".into());
        };
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c != quote) {
            self.i += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        if !self.eat(quote) {
            return Err("unterminated string".into());
        }
        Ok(text)
    }

    fn filter(&mut self) -> Result<Step, String> {
        if !self.eat(b'(') {
            return Err("missing ( after ?".into());
        }
        self.skip_spaces();
        if !self.eat(b'@') {
            return Err("a filter must start with @".into());
        }
        let left = self.steps(true)?;
        self.skip_spaces();
        let op = if self.eat(b')') {
            None
        } else {
            let op = self.operator()?;
            self.skip_spaces();
            let right = self.literal()?;
            self.skip_spaces();
            if !self.eat(b')') {
                return Err("missing ) in filter".into());
            }
            Some((op, right))
        };
        Ok(Step::Filter(Filter { left, op }))
    }

    fn operator(&mut self) -> Result<Op, String> {
        for (text, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.s[self.i..].starts_with(text.as_bytes()) {
                self.i += text.len();
                return Ok(op);
            }
        }
        Err("unsupported filter operator".into())
    }

    fn literal(&mut self) -> Result<Value, String> {
        if matches!(self.peek(), Some(b'\'' | b'"')) {
            return self.quoted().map(Value::String);
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c != b')' && c != b' ') {
            self.i += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        match text.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .map_err(|_| format!("unsupported filter literal {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(path: &str, v: &Value) -> Vec<Value> {
        JsonPath::parse(path).unwrap().find(v).into_iter().cloned().collect()
    }

    #[test]
    fn fields_indexes_wildcards_and_filters() {
        let obj = json!({
            "spec": {"role": "admin", "ports": [1, 2, 3]},
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "Rotated", "n": 3},
            ]},
        });
        assert_eq!(find(".spec.role", &obj), vec![json!("admin")]);
        assert_eq!(find("{.spec.role}", &obj), vec![json!("admin")]);
        assert_eq!(find(".spec.ports[-1]", &obj), vec![json!(3)]);
        assert_eq!(find(".spec.ports[*]", &obj), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            find(".metadata.labels['app.kubernetes.io/name']", &obj),
            vec![json!("x")]
        );
        assert_eq!(
            find(r".metadata.labels.app\.kubernetes\.io/name", &obj),
            vec![json!("x")]
        );
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Ready")].status"#, &obj),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type == 'Synced')].status", &obj),
            vec![json!("False")]
        );
        assert_eq!(
            find(".status.conditions[?(@.n >= 3)].reason", &obj),
            vec![json!("Rotated")]
        );
        assert_eq!(find(".status.conditions[?(@.reason)].type", &obj), vec![json!("Ready")]);
        assert!(find(".status.missing.deeper", &obj).is_empty());
        assert!(find(r#".status.conditions[?(@.type=="Gone")].status"#, &obj).is_empty());
    }

    #[test]
    fn unsupported_syntax_is_an_error() {
        assert!(JsonPath::parse("..name").is_err());
        assert!(JsonPath::parse(".a[1:2]").is_err());
        assert!(JsonPath::parse(".a[?(@.b ~ 1)]").is_err());
    }
}
