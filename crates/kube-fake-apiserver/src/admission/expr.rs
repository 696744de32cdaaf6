//! The CEL environment of ValidatingAdmissionPolicy expressions: `object`, `oldObject`,
//! `request`, `namespaceObject`, `variables`, the Kubernetes extension libraries (kube-cel) and
//! CEL optionals (`obj.?field`, `map[?key]`, `orValue`, `optional.of`), which kube-apiserver
//! enables for policies. kube-cel's own `VapEvaluator` compiles without optional syntax and has
//! no `variables`, so this module parses with the `cel` crate's parser directly.
//!
//! Two rewrites work around cel 0.13 (the version kube-cel 0.8 is built on; kube-cel's extension
//! libraries cannot be registered into a newer `cel` context):
//! - an optional field selection `x.?f` is an error there when `x` has no field `f` (fixed in
//!   cel 0.15). Every object here is a JSON map, for which `x.?f` means exactly `x[?'f']`, which
//!   cel 0.13 gets right: each selection is evaluated as that index.
//! - `==` / `!=` on its internal values is always false for optionals
//!   (`m[?k] == optional.of(v)`). The same comparison on its public `Value` type is CEL's
//!   equality, optionals included: both operators call a function doing that.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue, operators};
use kube_cel::cel::common::types::CelString;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::parser::{Expression, Parser};
use kube_cel::cel::{Context, ExecutionError, FunctionContext, Value as CelValue};
use serde_json::Value;

/// A parsed expression, with its source for error messages.
pub struct Compiled {
    source: String,
    expr: Expression,
}

/// Parses `source` with optional syntax on; the error is the parser's text.
pub fn compile(source: &str) -> Result<Compiled, String> {
    let mut expr = Parser::new()
        .enable_optional_syntax(true)
        .parse(source)
        .map_err(|e| e.to_string())?;
    rewrite(&mut expr);
    Ok(Compiled {
        source: source.to_string(),
        expr,
    })
}

const EQUALS: &str = "__fake_apiserver_equals";
const NOT_EQUALS: &str = "__fake_apiserver_not_equals";

fn equals(a: CelValue, b: CelValue) -> bool {
    a == b
}

fn not_equals(a: CelValue, b: CelValue) -> bool {
    a != b
}

/// cel-go's `string()` conversion, which also takes a bool (cel 0.13's refuses one, and a
/// messageExpression such as `string(request.dryRun)` must not fall back to `message` for it).
fn to_string(ftx: &FunctionContext, value: CelValue) -> Result<CelValue, ExecutionError> {
    Ok(match value {
        CelValue::String(s) => CelValue::String(s),
        CelValue::Bool(b) => CelValue::String(Arc::new(b.to_string())),
        CelValue::Int(i) => CelValue::String(Arc::new(i.to_string())),
        CelValue::UInt(u) => CelValue::String(Arc::new(u.to_string())),
        CelValue::Float(f) => CelValue::String(Arc::new(f.to_string())),
        CelValue::Bytes(b) => CelValue::String(Arc::new(String::from_utf8_lossy(&b).into_owned())),
        _ => return Err(ftx.error("no such overload")),
    })
}

/// Stands in for `variables.<name>` when that variable failed to evaluate: the expression
/// reading it fails with the variable's error, as the real server's lazy variables do (an
/// expression that never reaches the variable, e.g. behind a short-circuit, does not fail).
const VARIABLE_ERROR: &str = "__fake_apiserver_variable_error";

fn variable_error(ftx: &FunctionContext, message: Arc<String>) -> Result<CelValue, ExecutionError> {
    Err(ftx.error(message.as_str()))
}

/// The text cel-go (kube-apiserver) gives for an evaluation error, e.g. `no such key:
/// subResource`: cel 0.13's own texts differ in case and wording. Errors whose text would quote
/// a value are reduced to their kind: a value may be a Secret's data.
fn cel_go_message(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => format!("no such attribute: {name}"),
        ExecutionError::FunctionError { function, message } if function == VARIABLE_ERROR => message.clone(),
        ExecutionError::FunctionError { function, message } => format!("{function}: {message}"),
        ExecutionError::UnexpectedType { got, want } => format!("unexpected type: got '{got}', want '{want}'"),
        ExecutionError::InvalidArgumentCount { .. } | ExecutionError::MissingArgumentOrTarget => {
            "no matching overload".to_string()
        }
        _ => "no such overload".to_string(),
    }
}

/// Replaces each `variables.<name>` of a failed variable by a call of [`variable_error`] with
/// the variable's error text.
fn poison_failed_variables(e: &mut Expression, failed: &HashMap<String, String>) {
    let replacement = match &e.expr {
        Expr::Select(select)
            if !select.test
                && matches!(&select.operand.expr, Expr::Ident(id) if id == "variables")
                && failed.contains_key(&select.field) =>
        {
            failed.get(&select.field).cloned()
        }
        _ => None,
    };
    if let Some(message) = replacement {
        let mut arg = e.clone();
        arg.expr = Expr::Literal(LiteralValue::String(CelString::from(message.as_str())));
        e.expr = Expr::Call(CallExpr {
            func_name: VARIABLE_ERROR.to_string(),
            target: None,
            args: vec![arg],
        });
        return;
    }
    for_each_child(e, &mut |child| poison_failed_variables(child, failed));
}

/// The rewrites of the module docs: `x.?f` becomes `x[?'f']` (the call keeps its two arguments,
/// the operand and the field name as a string literal, which is also what indexing takes), and
/// `==` / `!=` become calls of [`equals`] / [`not_equals`].
fn rewrite(e: &mut Expression) {
    if let Expr::Call(call) = &mut e.expr {
        let renamed = match call.func_name.as_str() {
            operators::OPT_SELECT => Some(operators::OPT_INDEX),
            operators::EQUALS => Some(EQUALS),
            operators::NOT_EQUALS => Some(NOT_EQUALS),
            _ => None,
        };
        if let Some(name) = renamed {
            call.func_name = name.to_string();
        }
    }
    for_each_child(e, &mut rewrite);
}

/// Calls `f` on each direct subexpression of `e` (call target and arguments, comprehension
/// parts, list elements, select operand, map keys and values, struct field values): the one
/// walk both rewrites recurse through.
fn for_each_child(e: &mut Expression, f: &mut impl FnMut(&mut Expression)) {
    match &mut e.expr {
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                f(target);
            }
            call.args.iter_mut().for_each(&mut *f);
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                f(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(&mut *f),
        Expr::Select(select) => f(&mut select.operand),
        Expr::Map(map) => map.entries.iter_mut().for_each(|x| entry_children(&mut x.expr, f)),
        Expr::Struct(st) => st.entries.iter_mut().for_each(|x| entry_children(&mut x.expr, f)),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

fn entry_children(entry: &mut EntryExpr, f: &mut impl FnMut(&mut Expression)) {
    match entry {
        EntryExpr::MapEntry(m) => {
            f(&mut m.key);
            f(&mut m.value);
        }
        EntryExpr::StructField(fv) => f(&mut fv.value),
    }
}

/// Converts JSON to a CEL value. Object keys stay as they are: the fake has no OpenAPI types,
/// so property-name escaping (`__dash__` and friends) is not applied.
pub fn to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => CelValue::Int(i),
            (None, Some(u)) => CelValue::UInt(u),
            _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(a) => CelValue::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<Key, CelValue> = m
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// The variables every expression of one admission request sees.
pub struct Env {
    ctx: Context<'static>,
    variables: HashMap<Key, CelValue>,
    /// Variables whose expression failed, with the error an expression reading them gets.
    failed: HashMap<String, String>,
}

impl Env {
    /// An environment with the request's variables bound (`params` is always null: paramKind is
    /// not modelled).
    pub fn new(object: &Value, old_object: &Value, request: &Value, namespace_object: &Value) -> Env {
        let mut ctx = Context::default();
        ctx.register_all();
        ctx.add_function(EQUALS, equals);
        ctx.add_function(NOT_EQUALS, not_equals);
        ctx.add_function(VARIABLE_ERROR, variable_error);
        ctx.add_function("string", to_string);
        ctx.add_variable_from_value("object", to_cel(object));
        ctx.add_variable_from_value("oldObject", to_cel(old_object));
        ctx.add_variable_from_value("request", to_cel(request));
        ctx.add_variable_from_value("namespaceObject", to_cel(namespace_object));
        ctx.add_variable_from_value("params", CelValue::Null);
        let mut env = Env {
            ctx,
            variables: HashMap::new(),
            failed: HashMap::new(),
        };
        env.bind_variables();
        env
    }

    fn bind_variables(&mut self) {
        let map = Map {
            map: Arc::new(self.variables.clone()),
        };
        self.ctx.add_variable_from_value("variables", CelValue::Map(map));
    }

    /// Evaluates `expr`, with the failed variables it reads failing it; the error is cel-go's
    /// text.
    fn resolve(&self, expr: &Compiled) -> Result<CelValue, String> {
        let result = if self.failed.is_empty() {
            CelValue::resolve(&expr.expr, &self.ctx)
        } else {
            let mut poisoned = expr.expr.clone();
            poison_failed_variables(&mut poisoned, &self.failed);
            CelValue::resolve(&poisoned, &self.ctx)
        };
        result.map_err(|e| cel_go_message(&e))
    }

    /// Evaluates `spec.variables[i]` and makes it visible to later expressions. A variable that
    /// fails is not bound: an expression that reads it fails with `composited variable "<name>"
    /// fails to evaluate: <error>` (the real server evaluates variables lazily, on first read).
    pub fn define(&mut self, name: &str, expr: &Compiled) {
        match self.resolve(expr) {
            Ok(v) => {
                self.variables.insert(Key::String(Arc::new(name.to_string())), v);
                self.bind_variables();
            }
            Err(e) => {
                // A variable failing because it reads a failed one fails with that one's error:
                // what cel-go reports first for an expression reading either (it evaluates `&&`
                // from the left, and the chart's expressions read the root variable first).
                let message = if e.starts_with("composited variable ") {
                    e
                } else {
                    format!("composited variable {name:?} fails to evaluate: {e}")
                };
                self.failed.insert(name.to_string(), message);
            }
        }
    }

    /// Evaluates a boolean expression (validations and matchConditions). The error is the real
    /// server's text: `expression '<source>' resulted in error: <cel-go error>`.
    pub fn eval_bool(&self, expr: &Compiled) -> Result<bool, String> {
        match self.resolve(expr) {
            Ok(CelValue::Bool(b)) => Ok(b),
            // Never echo the value: it may be a Secret's data.
            Ok(_) => Err(format!(
                "expression '{}' resulted in error: no such overload (expected a bool)",
                expr.source
            )),
            Err(e) => Err(format!("expression '{}' resulted in error: {e}", expr.source)),
        }
    }

    /// Evaluates a messageExpression; None unless it yields a usable string (trimmed, non-empty,
    /// one line, at most 5 KiB), when the real server falls back to `message`.
    pub fn eval_message(&self, expr: &Compiled) -> Option<String> {
        match self.resolve(expr) {
            Ok(CelValue::String(s)) => {
                Some(s.trim().to_string()).filter(|m| !m.is_empty() && !m.contains('\n') && m.len() <= 5120)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(object: Value, source: &str) -> Result<bool, String> {
        let env = Env::new(&object, &Value::Null, &json!({}), &Value::Null);
        env.eval_bool(&compile(source)?)
    }

    #[test]
    fn optional_selection_and_indexing_on_maps() {
        let obj = json!({"metadata": {"labels": {"a": "x"}}, "spec": {"m": {}}});
        let cases = [
            ("object.metadata.?labels[?'a'].orValue('') == 'x'", true),
            ("object.metadata.?labels[?'b'].orValue('') == ''", true),
            ("object.metadata.?annotations[?'a'].orValue('') == ''", true),
            ("object.?spec.?m.?n.orValue(1) == 1", true),
            ("object.?spec.?m.hasValue()", true),
            ("object.?status.hasValue()", false),
            ("object.spec.m.?x.orValue({}).all(k, false)", true),
            ("object.metadata.?labels[?'a'] == optional.of('x')", true),
            ("object.metadata.?labels[?'a'] == optional.of('y')", false),
            ("object.metadata.?labels[?'b'] == optional.of('x')", false),
            ("{'k': object.?spec.orValue({})}.k.size() == 1", true),
            ("object.metadata.?labels[?'a'] != optional.none()", true),
            ("optional.none() == optional.none()", true),
            (
                "object.metadata == {'labels': {'a': 'x'}} && 1 == 1.0 && 'a' != 'b'",
                true,
            ),
            ("[1, 2].all(i, i != 3) && !({'a': 1} == {'a': 2})", true),
        ];
        for (source, want) in cases {
            assert_eq!(eval(obj.clone(), source), Ok(want), "{source}");
        }
    }

    #[test]
    fn a_missing_field_without_optionals_is_an_error() {
        let err = eval(json!({"metadata": {}}), "object.metadata.labels['a'] == 'x'").unwrap_err();
        assert!(err.contains("resulted in error"), "{err}");
    }

    #[test]
    fn variables_are_visible_to_later_expressions() {
        let mut env = Env::new(
            &json!({"spec": {"replicas": 2}}),
            &Value::Null,
            &json!({}),
            &Value::Null,
        );
        env.define("r", &compile("object.spec.replicas").unwrap());
        env.define("double", &compile("variables.r * 2").unwrap());
        env.define("broken", &compile("object.nope.deeper").unwrap());
        assert_eq!(env.eval_bool(&compile("variables.double == 4").unwrap()), Ok(true));
        assert!(env.eval_bool(&compile("variables.broken == 1").unwrap()).is_err());
    }
}
