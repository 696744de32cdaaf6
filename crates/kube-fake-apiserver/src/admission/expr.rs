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
use kube_cel::cel::common::ast::{EntryExpr, Expr, operators};
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::parser::{Expression, Parser};
use kube_cel::cel::{Context, Value as CelValue};
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

/// The rewrites of the module docs: `x.?f` becomes `x[?'f']` (the call keeps its two arguments,
/// the operand and the field name as a string literal, which is also what indexing takes), and
/// `==` / `!=` become calls of [`equals`] / [`not_equals`].
fn rewrite(e: &mut Expression) {
    match &mut e.expr {
        Expr::Call(call) => {
            let renamed = match call.func_name.as_str() {
                operators::OPT_SELECT => Some(operators::OPT_INDEX),
                operators::EQUALS => Some(EQUALS),
                operators::NOT_EQUALS => Some(NOT_EQUALS),
                _ => None,
            };
            if let Some(name) = renamed {
                call.func_name = name.to_string();
            }
            if let Some(target) = call.target.as_deref_mut() {
                rewrite(target);
            }
            call.args.iter_mut().for_each(rewrite);
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                rewrite(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(rewrite),
        Expr::Select(select) => rewrite(&mut select.operand),
        Expr::Map(map) => map.entries.iter_mut().for_each(|e| entry_rewrite(&mut e.expr)),
        Expr::Struct(st) => st.entries.iter_mut().for_each(|e| entry_rewrite(&mut e.expr)),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

fn entry_rewrite(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::MapEntry(m) => {
            rewrite(&mut m.key);
            rewrite(&mut m.value);
        }
        EntryExpr::StructField(f) => rewrite(&mut f.value),
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
}

impl Env {
    /// An environment with the request's variables bound (`params` is always null: paramKind is
    /// not modelled).
    pub fn new(object: &Value, old_object: &Value, request: &Value, namespace_object: &Value) -> Env {
        let mut ctx = Context::default();
        ctx.register_all();
        ctx.add_function(EQUALS, equals);
        ctx.add_function(NOT_EQUALS, not_equals);
        ctx.add_variable_from_value("object", to_cel(object));
        ctx.add_variable_from_value("oldObject", to_cel(old_object));
        ctx.add_variable_from_value("request", to_cel(request));
        ctx.add_variable_from_value("namespaceObject", to_cel(namespace_object));
        ctx.add_variable_from_value("params", CelValue::Null);
        let mut env = Env {
            ctx,
            variables: HashMap::new(),
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

    /// Evaluates `spec.variables[i]` and makes it visible to later expressions. A variable that
    /// fails stays unbound, so only the expressions using it fail (the real server evaluates
    /// variables lazily, with the same effect on the outcome).
    pub fn define(&mut self, name: &str, expr: &Compiled) {
        if let Ok(v) = CelValue::resolve(&expr.expr, &self.ctx) {
            self.variables.insert(Key::String(Arc::new(name.to_string())), v);
            self.bind_variables();
        }
    }

    /// Evaluates a boolean expression (validations and matchConditions).
    pub fn eval_bool(&self, expr: &Compiled) -> Result<bool, String> {
        match CelValue::resolve(&expr.expr, &self.ctx) {
            Ok(CelValue::Bool(b)) => Ok(b),
            // Never echo the value: it may be a Secret's data.
            Ok(_) => Err(format!(
                "expression '{}' resulted in error: no such overload (expected a bool)",
                expr.source
            )),
            Err(e) => Err(format!("expression '{}' resulted in error: {e}", expr.source)),
        }
    }

    /// Evaluates a messageExpression; None unless it yields a non-empty string (the real server
    /// then falls back to `message`).
    pub fn eval_message(&self, expr: &Compiled) -> Option<String> {
        match CelValue::resolve(&expr.expr, &self.ctx) {
            Ok(CelValue::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
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
