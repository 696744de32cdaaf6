//! The worst-case cost of one CEL expression, estimated from its syntax and the schema of the
//! node it is attached to, the way cel-go's checker and the Kubernetes CEL library price calls:
//! most operations cost 1, string work costs a tenth per byte, `matches()` costs the string's
//! length times a quarter of the regex's, and a comprehension costs its body once per element the
//! range can hold. Only the upper bound is tracked, since only it is compared with the limits.

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;

use super::sizes::{self, Kind, UNBOUNDED_STRING};

/// Cost per byte of walking a string.
const STRING_TRAVERSAL: f64 = 0.1;
/// Cost per regex character (a guess of one regex term per four characters).
const REGEX_LENGTH: f64 = 0.25;
/// Regex length assumed for the named formats of `format.<name>().validate()`.
const FORMAT_REGEX_SIZE: f64 = 128.0;
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;
const STRUCT_CREATE: u64 = 40;

/// Where a value sits in the schema, so its size can be looked up.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Schema(&'a Value),
    /// A map key: the schema cannot bound it and the estimate treats it as empty.
    Key,
    /// A string the server adds to every resource root (kind, apiVersion, metadata.name).
    ImplicitString,
    /// The implicit `metadata` of a resource root.
    ImplicitMeta,
}

impl Node<'_> {
    fn kind(self) -> Kind {
        match self {
            Node::Schema(s) => sizes::kind(s),
            Node::Key | Node::ImplicitString => Kind::Str,
            Node::ImplicitMeta => Kind::Object,
        }
    }

    fn max_size(self) -> u64 {
        match self {
            Node::Schema(s) => sizes::max_elements(s),
            Node::Key | Node::ImplicitMeta => 0,
            Node::ImplicitString => UNBOUNDED_STRING,
        }
    }
}

/// The estimate of one sub-expression.
#[derive(Debug, Clone, Copy)]
struct Est<'a> {
    cost: u64,
    /// Result size computed by the operation itself (e.g. `lowerAscii()` keeps its input's size).
    size: Option<u64>,
    node: Option<Node<'a>>,
    kind: Option<Kind>,
}

impl<'a> Est<'a> {
    fn new(cost: u64) -> Self {
        Est {
            cost,
            size: None,
            node: None,
            kind: None,
        }
    }

    fn scalar(cost: u64) -> Self {
        Est {
            size: Some(1),
            kind: Some(Kind::Scalar),
            ..Est::new(cost)
        }
    }

    fn kind(&self) -> Option<Kind> {
        self.kind.or(self.node.map(Node::kind))
    }

    /// The largest size this value can have; unknown sizes are unbounded.
    fn size(&self) -> u64 {
        self.size
            .or(self.node.map(Node::max_size))
            .or((self.kind() == Some(Kind::Scalar)).then_some(1))
            .unwrap_or(u64::MAX)
    }
}

fn factor(size: u64, f: f64) -> u64 {
    let v = (size as f64 * f).ceil();
    if v >= u64::MAX as f64 { u64::MAX } else { v as u64 }
}

/// Estimates expressions evaluated against one schema node (`self` / `oldSelf`).
pub(crate) struct Estimator<'a> {
    root: &'a Value,
    resource_root: bool,
    vars: Vec<(String, Option<Node<'a>>, Option<Kind>)>,
}

impl<'a> Estimator<'a> {
    /// An estimator for rules on `node`; `resource_root` adds the implicit kind/apiVersion/metadata.
    pub(crate) fn new(node: &'a Value, resource_root: bool) -> Self {
        Estimator {
            root: node,
            resource_root,
            vars: Vec::new(),
        }
    }

    /// The worst-case cost of `expr`.
    pub(crate) fn cost(&mut self, expr: &IdedExpr) -> u64 {
        self.est(expr).cost
    }

    fn var(&self, name: &str) -> Option<(Option<Node<'a>>, Option<Kind>)> {
        if let Some((_, n, k)) = self.vars.iter().rev().find(|(v, _, _)| v == name) {
            return Some((*n, *k));
        }
        matches!(name, "self" | "oldSelf").then_some((Some(Node::Schema(self.root)), None))
    }

    fn est(&mut self, e: &IdedExpr) -> Est<'a> {
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Ident(name) => match self.var(name) {
                Some((node, kind)) => Est {
                    node,
                    kind,
                    ..Est::new(1)
                },
                None => Est::new(1),
            },
            Expr::Select(s) => {
                let op = self.est(&s.operand);
                if s.test {
                    return Est::scalar(op.cost.saturating_add(1));
                }
                let extra = u64::from(matches!(op.kind(), Some(Kind::Map | Kind::Object | Kind::Dyn) | None));
                Est {
                    node: op.node.and_then(|n| self.field(n, &s.field)),
                    ..Est::new(op.cost.saturating_add(extra))
                }
            }
            Expr::Call(c) => self.call(c),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(l) => {
                let sum = l
                    .elements
                    .iter()
                    .fold(LIST_CREATE, |acc, x| acc.saturating_add(self.est(x).cost));
                Est {
                    size: Some(l.elements.len() as u64),
                    kind: Some(Kind::List),
                    ..Est::new(sum)
                }
            }
            Expr::Map(m) => {
                let sum = m
                    .entries
                    .iter()
                    .fold(MAP_CREATE, |acc, x| acc.saturating_add(self.entry(&x.expr)));
                Est {
                    size: Some(m.entries.len() as u64),
                    kind: Some(Kind::Map),
                    ..Est::new(sum)
                }
            }
            Expr::Struct(s) => Est::new(
                s.entries
                    .iter()
                    .fold(STRUCT_CREATE, |acc, x| acc.saturating_add(self.entry(&x.expr))),
            ),
            Expr::Unspecified => Est::new(0),
        }
    }

    fn entry(&mut self, e: &EntryExpr) -> u64 {
        match e {
            EntryExpr::StructField(f) => self.est(&f.value).cost,
            EntryExpr::MapEntry(m) => self.est(&m.key).cost.saturating_add(self.est(&m.value).cost),
        }
    }

    /// The schema node of `field` selected on `node`.
    fn field(&self, node: Node<'a>, field: &str) -> Option<Node<'a>> {
        match node {
            Node::Schema(s) => {
                if let Some(v) = sizes::map_values(s) {
                    return Some(Node::Schema(v));
                }
                if let Some(p) = sizes::property(s, field) {
                    return Some(Node::Schema(p));
                }
                let at_root = self.resource_root && std::ptr::eq(s, self.root);
                match field {
                    "kind" | "apiVersion" if at_root => Some(Node::ImplicitString),
                    "metadata" if at_root => Some(Node::ImplicitMeta),
                    _ => None,
                }
            }
            Node::ImplicitMeta if matches!(field, "name" | "generateName") => Some(Node::ImplicitString),
            _ => None,
        }
    }

    /// The node of one element of a list (its items) or map (its values).
    fn element(node: Option<Node<'a>>) -> Option<Node<'a>> {
        match node {
            Some(Node::Schema(s)) => sizes::list_items(s).or(sizes::map_values(s)).map(Node::Schema),
            _ => None,
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Est<'a> {
        let range = self.est(&c.iter_range);
        let init = self.est(&c.accu_init);
        // Iterating a map binds its keys; a list binds its items (or, with two variables, the
        // index then the item).
        let (first, second) = match range.kind() {
            Some(Kind::Map) => ((Some(Node::Key), None), (Self::element(range.node), None)),
            _ if c.iter_var2.is_some() => ((None, Some(Kind::Scalar)), (Self::element(range.node), None)),
            _ => ((Self::element(range.node), None), (None, None)),
        };
        let depth = self.vars.len();
        self.vars.push((c.accu_var.clone(), init.node, init.kind()));
        self.vars.push((c.iter_var.clone(), first.0, first.1));
        if let Some(v2) = &c.iter_var2 {
            self.vars.push((v2.clone(), second.0, second.1));
        }
        let per_element = self.est(&c.loop_cond).cost.saturating_add(self.est(&c.loop_step).cost);
        self.vars.truncate(depth);
        let result = self.est(&c.result);
        let count = range.size();
        let cost = range
            .cost
            .saturating_add(init.cost)
            .saturating_add(result.cost)
            .saturating_add(count.saturating_mul(per_element));
        match init.kind() {
            Some(Kind::List | Kind::Map) => Est {
                size: Some(count),
                kind: init.kind(),
                ..Est::new(cost)
            },
            Some(Kind::Scalar) => Est::scalar(cost),
            _ => Est::new(cost),
        }
    }

    fn call(&mut self, c: &CallExpr) -> Est<'a> {
        let args: Vec<Est<'a>> = c.args.iter().map(|a| self.est(a)).collect();
        // `format.dns1123Subdomain()` and `optional.of()` are namespaced global functions, not
        // member calls on a variable.
        let namespaced = matches!(&c.target, Some(t) if matches!(&t.expr, Expr::Ident(n) if self.var(n).is_none()));
        let target = match &c.target {
            Some(t) if !namespaced => Some(self.est(t)),
            _ => None,
        };
        let arg_sum = args.iter().fold(0u64, |acc, a| acc.saturating_add(a.cost));
        let base = target.map_or(0, |t| t.cost).saturating_add(arg_sum);
        let arg_size = |i: usize| args.get(i).map(Est::size).unwrap_or(u64::MAX);
        let (cost, mut out) = match (c.func_name.as_str(), target, args.len()) {
            ("_&&_" | "_||_", _, _) => (0, Est::scalar(0)),
            ("_?_:_", _, 3) => {
                // The condition plus the dearer branch, not both branches.
                let branch = args[1].cost.max(args[2].cost);
                let size = args[1].size().max(args[2].size());
                let out = Est {
                    size: Some(size),
                    kind: args[1].kind().or(args[2].kind()),
                    ..Est::new(0)
                };
                return Est {
                    cost: args[0].cost.saturating_add(branch),
                    ..out
                };
            }
            ("matches" | "find" | "findAll", Some(t), 1) => (
                regex_cost(t.size(), args[0].size()),
                regex_result(&c.func_name, t.size()),
            ),
            ("matches", None, 2) => (regex_cost(args[0].size(), args[1].size()), Est::scalar(0)),
            ("contains", Some(t), 1) => (
                factor(t.size(), STRING_TRAVERSAL).saturating_mul(factor(args[0].size(), STRING_TRAVERSAL)),
                Est::scalar(0),
            ),
            ("startsWith" | "endsWith", Some(_), 1) => (factor(args[0].size(), STRING_TRAVERSAL), Est::scalar(0)),
            ("@in", _, 2) if args[1].kind() == Some(Kind::Map) => (1, Est::scalar(0)),
            ("@in", _, 2) => (args[1].size(), Est::scalar(0)),
            ("_==_" | "_!=_", _, 2) => (compare_cost(&args), Est::scalar(0)),
            ("_<_" | "_<=_" | "_>_" | "_>=_", _, 2)
                if args[0].kind() == Some(Kind::Str) && args[1].kind() == Some(Kind::Str) =>
            {
                (compare_cost(&args), Est::scalar(0))
            }
            ("_+_", _, 2) if args.iter().any(|a| a.kind() == Some(Kind::Str)) => {
                let size = arg_size(0).saturating_add(arg_size(1));
                (factor(size, STRING_TRAVERSAL), sized(size, Kind::Str))
            }
            ("_+_", _, 2) if args.iter().any(|a| a.kind() == Some(Kind::List)) => {
                (1, sized(arg_size(0).saturating_add(arg_size(1)), Kind::List))
            }
            ("lowerAscii" | "upperAscii" | "substring" | "trim", Some(t), _) => {
                (factor(t.size(), STRING_TRAVERSAL), sized(t.size(), Kind::Str))
            }
            ("replace", Some(t), n) if n >= 2 => {
                let grows = args[1].size() > args[0].size();
                let size = if grows {
                    t.size().saturating_mul(args[1].size().max(1))
                } else {
                    t.size()
                };
                (factor(t.size(), 2.0 * STRING_TRAVERSAL), sized(size, Kind::Str))
            }
            ("split", Some(t), n) => {
                let limit = match c.args.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::Int(i))) if n > 1 => Some((*i.inner()).max(0).unsigned_abs()),
                    _ => None,
                };
                (
                    factor(t.size(), 2.0 * STRING_TRAVERSAL),
                    sized(limit.unwrap_or(t.size()), Kind::List),
                )
            }
            ("join", Some(t), _) => {
                let elem = Self::element(t.node).map_or(u64::MAX, Node::max_size);
                let seps = args
                    .first()
                    .map_or(0, |s| s.size().saturating_mul(t.size().saturating_sub(1)));
                let size = t.size().saturating_mul(elem).saturating_add(seps);
                (factor(size, STRING_TRAVERSAL), sized(size, Kind::Str))
            }
            ("isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf", Some(t), _) => {
                if t.kind() == Some(Kind::List) {
                    let elem = Self::element(t.node);
                    let per = match elem.map(Node::kind) {
                        Some(Kind::Str) => 1 + elem.map_or(u64::MAX, |e| factor(e.max_size(), STRING_TRAVERSAL)),
                        _ => 1,
                    };
                    (t.size().saturating_mul(per), Est::new(0))
                } else {
                    (factor(t.size(), STRING_TRAVERSAL), Est::scalar(0))
                }
            }
            ("url" | "jsonpatch.escapeKey", None, 1) => (
                factor(args[0].size(), STRING_TRAVERSAL),
                sized(args[0].size(), Kind::Str),
            ),
            (
                "quantity" | "isQuantity" | "semver" | "isSemver" | "cidr" | "isIP" | "isCIDR" | "ip"
                | "ip.isCanonical",
                Some(_),
                n,
            ) if n >= 1 => (factor(args[0].size(), STRING_TRAVERSAL), Est::new(0)),
            ("validate", Some(_), n) if n >= 1 => (
                factor(
                    factor(args[0].size(), STRING_TRAVERSAL),
                    FORMAT_REGEX_SIZE * REGEX_LENGTH,
                ),
                Est::new(0),
            ),
            ("_[_]" | "_[?_]", _, 2) => {
                let node = Self::element(args[0].node);
                (1, Est { node, ..Est::new(0) })
            }
            ("value" | "orValue", Some(t), _) => (1, Est { cost: 0, ..t }),
            ("size" | "!_" | "@not_strictly_false" | "hasValue", _, _) => (1, Est::scalar(0)),
            _ => (1, Est::new(0)),
        };
        out.cost = base.saturating_add(cost);
        out
    }
}

fn literal<'a>(l: &LiteralValue) -> Est<'a> {
    match l {
        LiteralValue::String(s) => sized(s.inner().chars().count() as u64, Kind::Str),
        LiteralValue::Bytes(b) => sized(b.inner().len() as u64, Kind::Str),
        _ => Est::scalar(0),
    }
}

fn sized<'a>(size: u64, kind: Kind) -> Est<'a> {
    Est {
        size: Some(size),
        kind: Some(kind),
        ..Est::new(0)
    }
}

/// `s.matches(re)`: one more than the string's length (an empty string still runs the regex)
/// times a quarter of the regex's length.
fn regex_cost(string: u64, regex: u64) -> u64 {
    factor(string.saturating_add(1), STRING_TRAVERSAL).saturating_mul(factor(regex, REGEX_LENGTH))
}

fn regex_result<'a>(function: &str, string: u64) -> Est<'a> {
    if function == "matches" {
        Est::scalar(0)
    } else {
        sized(string, Kind::List)
    }
}

/// Equality and ordering walk the shorter operand.
fn compare_cost(args: &[Est]) -> u64 {
    let shorter = args.iter().map(Est::size).min().unwrap_or(1).max(1);
    factor(shorter, STRING_TRAVERSAL)
}

/// Whether the expression reads `oldSelf` (a transition rule).
pub(crate) fn uses_old_self(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(n) => n == "oldSelf",
        Expr::Select(s) => uses_old_self(&s.operand),
        Expr::Call(c) => c.target.as_deref().is_some_and(uses_old_self) || c.args.iter().any(uses_old_self),
        Expr::Comprehension(c) => [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
            .into_iter()
            .any(uses_old_self),
        Expr::List(l) => l.elements.iter().any(uses_old_self),
        Expr::Map(m) => m.entries.iter().any(|x| match &x.expr {
            EntryExpr::MapEntry(m) => uses_old_self(&m.key) || uses_old_self(&m.value),
            EntryExpr::StructField(f) => uses_old_self(&f.value),
        }),
        Expr::Struct(s) => s.entries.iter().any(|x| match &x.expr {
            EntryExpr::MapEntry(m) => uses_old_self(&m.key) || uses_old_self(&m.value),
            EntryExpr::StructField(f) => uses_old_self(&f.value),
        }),
        Expr::Literal(_) | Expr::Unspecified => false,
    }
}
