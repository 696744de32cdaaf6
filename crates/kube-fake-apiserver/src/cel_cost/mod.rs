//! CEL rule cost estimation at CRD create/update time, as the real API server does it: every
//! `x-kubernetes-validations` rule is priced from the schema alone (strings at `maxLength` x 4
//! bytes or the whole request, lists and maps at `maxItems` / `maxProperties` or as many elements
//! as a request can hold), multiplied by how often its schema node can repeat, and compared with
//! a per-rule and a per-CRD limit. Pinned by `crd-cel-cost.json`.

mod expr;
mod sizes;

use cel::parser::Parser;
use serde_json::{Value, json};

use crate::errors::Cause;
use expr::{Estimator, uses_old_self};

/// The most one rule (times its cardinality) may cost.
pub const PER_RULE_LIMIT: u64 = 10_000_000;
/// The most all rules of one schema may cost together.
pub const PER_CRD_LIMIT: u64 = 100_000_000;

/// Rules below one percent of the per-CRD limit are never named as contributors to its excess.
const CONTRIBUTOR_THRESHOLD: u64 = PER_CRD_LIMIT / 100;
/// The server names at most this many of the most expensive rules when the total is exceeded.
const MAX_CONTRIBUTORS: usize = 4;

const HINT: &str = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";

/// The estimated cost of one `x-kubernetes-validations` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCost {
    /// Field path of the expression, e.g. `spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`.
    pub field: String,
    /// The CEL source.
    pub expression: String,
    /// Estimated worst-case cost, already multiplied by how often the schema node can repeat.
    pub cost: u64,
    /// The limit it is compared with.
    pub limit: u64,
}

/// The estimate for one OpenAPI schema of a CRD.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaCost {
    /// Field path of the schema (`spec.validation.openAPIV3Schema` when all versions share one).
    pub field: String,
    /// Every rule and messageExpression, in the order the server visits them.
    pub rules: Vec<RuleCost>,
    /// Sum of all their costs, compared with [`PER_CRD_LIMIT`].
    pub total: u64,
}

/// Estimates every schema of a CRD (a `CustomResourceDefinition` JSON object).
pub fn estimate_crd(crd: &Value) -> Vec<SchemaCost> {
    schemas(crd)
        .into_iter()
        .map(|(field, schema)| walk_schema(schema, field).0)
        .collect()
}

/// The field errors the real server returns for these rule costs (empty when accepted). On an
/// update, a schema identical to the stored one keeps its rules even if they are over the
/// per-rule limit (so a server upgrade that prices rules higher cannot lock a CRD); the per-CRD
/// total is still enforced.
pub(crate) fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let unchanged = old.map(schemas).unwrap_or_default();
    schemas(crd)
        .into_iter()
        .flat_map(|(field, schema)| {
            let suppress = unchanged.iter().any(|(f, s)| *f == field && *s == schema);
            let (_, causes) = walk_schema(schema, field);
            causes.into_iter().filter(move |c| !(suppress && is_per_expression(c)))
        })
        .collect()
}

fn is_per_expression(c: &Cause) -> bool {
    c.message.starts_with("Forbidden: estimated ")
}

/// How the server prints "exceeds budget by factor of ...".
pub fn factor_text(cost: u64, limit: u64) -> String {
    let f = cost as f64 / limit as f64;
    if f > 100.0 {
        "more than 100x".to_string()
    } else if f < 1.5 {
        // Six decimals so a rule just over the limit does not read "1.0x".
        format!("{f:.6}x")
    } else {
        format!("{f:.1}x")
    }
}

/// The schemas to check and their field paths. Versions that all share one schema are validated
/// once, under the internal `spec.validation` path the real server reports.
fn schemas(crd: &Value) -> Vec<(String, &Value)> {
    let versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let found: Vec<(usize, &Value)> = versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.pointer("/schema/openAPIV3Schema").map(|s| (i, s)))
        .collect();
    let shared = found.len() == versions.len() && found.windows(2).all(|w| w[0].1 == w[1].1);
    match found.first() {
        Some((_, s)) if shared => vec![("spec.validation.openAPIV3Schema".to_string(), *s)],
        _ => found
            .into_iter()
            .map(|(i, s)| (format!("spec.versions[{i}].schema.openAPIV3Schema"), s))
            .collect(),
    }
}

fn walk_schema(schema: &Value, field: String) -> (SchemaCost, Vec<Cause>) {
    let mut w = Walk::default();
    w.node(schema, &field, Some(1), None, true);
    if w.total > PER_CRD_LIMIT {
        let mut contributors = w.contributors.clone();
        // Most expensive first; equal costs keep the order they were visited in.
        contributors.sort_by_key(|c| std::cmp::Reverse(c.1));
        for (path, _) in contributors.into_iter().take(MAX_CONTRIBUTORS) {
            w.causes.push(Cause::forbidden(
                &path,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        let msg = format!(
            "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of {} {HINT}",
            factor_text(w.total, PER_CRD_LIMIT)
        );
        w.causes.push(Cause::forbidden(&field, &msg));
    }
    let cost = SchemaCost {
        field,
        rules: w.rules,
        total: w.total,
    };
    (cost, w.causes)
}

#[derive(Default)]
struct Walk {
    rules: Vec<RuleCost>,
    causes: Vec<Cause>,
    total: u64,
    contributors: Vec<(String, u64)>,
}

fn times(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.saturating_mul(b?))
}

impl Walk {
    /// Visits `s` at `path`. `cardinality` is how often it can repeat given its parents' bounds
    /// (`None` when an unbounded list or map is above it); `uncorrelatable` is the path of the
    /// nearest-to-root list above it whose items cannot be matched to their old version.
    fn node(&mut self, s: &Value, path: &str, cardinality: Option<u64>, uncorrelatable: Option<&str>, root: bool) {
        let child_card = times(cardinality, sizes::child_factor(s));
        if let Some(values) = sizes::map_values(s) {
            let values_path = format!("{path}.additionalProperties");
            self.node(values, &values_path, child_card, uncorrelatable, false);
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            // The fields of an atomic struct are replaced as a whole, so old and new cannot be paired.
            let atomic = s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
            let unc = if atomic {
                uncorrelatable.or(Some(path))
            } else {
                uncorrelatable
            };
            let mut names: Vec<&String> = props.keys().collect();
            names.sort();
            for name in names {
                self.node(
                    &props[name],
                    &format!("{path}.properties[{name}]"),
                    child_card,
                    unc,
                    false,
                );
            }
        }
        if let Some(items) = sizes::list_items(s) {
            let keyed = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            let unc = if keyed {
                uncorrelatable
            } else {
                uncorrelatable.or(Some(path))
            };
            self.node(items, &format!("{path}.items"), child_card, unc, false);
        }
        let rules = s.get("x-kubernetes-validations").and_then(Value::as_array);
        for (i, rule) in rules.into_iter().flatten().enumerate() {
            self.rule(
                s,
                rule,
                &format!("{path}.x-kubernetes-validations[{i}]"),
                cardinality,
                uncorrelatable,
                root,
            );
        }
    }

    fn rule(
        &mut self,
        s: &Value,
        rule: &Value,
        path: &str,
        cardinality: Option<u64>,
        uncorrelatable: Option<&str>,
        root: bool,
    ) {
        let Some(source) = rule.get("rule").and_then(Value::as_str) else {
            return;
        };
        // Rules that do not parse are refused elsewhere; they have no cost to report.
        let Ok(ast) = Parser::new().enable_optional_syntax(true).parse(source) else {
            return;
        };
        let field = format!("{path}.rule");
        let base = Estimator::new(s, root).cost(&ast);
        let repeat = cardinality.unwrap_or_else(|| sizes::max_cardinality(s));
        let cost = if base == 0 { 0 } else { base.saturating_mul(repeat) };
        if cost > PER_RULE_LIMIT {
            let msg = format!(
                "estimated rule cost exceeds budget by factor of {} {HINT}",
                factor_text(cost, PER_RULE_LIMIT)
            );
            self.causes.push(Cause::forbidden(&field, &msg));
        }
        self.observe(&field, source, cost);
        if let Some(message) = rule.get("messageExpression").and_then(Value::as_str)
            && let Ok(m) = Parser::new().enable_optional_syntax(true).parse(message)
        {
            // A message is built once per failure, so its cost is not multiplied.
            let m_field = format!("{path}.messageExpression");
            let m_cost = Estimator::new(s, root).cost(&m);
            if m_cost > PER_RULE_LIMIT {
                let msg = format!(
                    "estimated messageExpression cost exceeds budget by factor of {} {HINT}",
                    factor_text(m_cost, PER_RULE_LIMIT)
                );
                self.causes.push(Cause::forbidden(&m_field, &msg));
            }
            self.observe(&m_field, message, m_cost);
        }
        if let Some(within) = uncorrelatable
            && uses_old_self(&ast)
        {
            let detail = format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}");
            self.causes.push(Cause::invalid(&field, &json!(source), &detail));
        }
    }

    fn observe(&mut self, field: &str, expression: &str, cost: u64) {
        self.total = self.total.saturating_add(cost);
        if cost >= CONTRIBUTOR_THRESHOLD {
            self.contributors.push((field.to_string(), cost));
        }
        self.rules.push(RuleCost {
            field: field.to_string(),
            expression: expression.to_string(),
            cost,
            limit: PER_RULE_LIMIT,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A CRD with one string field `f` carrying `rule`, as in crd-cel-cost.json's probes.
    fn probe(field: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"f": field}}}
        }}}]}})
    }

    fn regex_rule(max_length: Option<u64>) -> Value {
        let rule = format!("self.matches('^{}$')", "a".repeat(123));
        let mut f = json!({"type": "string", "x-kubernetes-validations": [{"rule": rule}]});
        if let Some(n) = max_length {
            f["maxLength"] = json!(n);
        }
        probe(f)
    }

    #[test]
    fn over_budget_rule_is_refused_on_create_and_on_a_changed_schema() {
        let crd = regex_rule(None);
        let causes = validate_crd(&crd, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].message.contains("factor of 1.006634x"), "{causes:?}");
        assert_eq!(validate_crd(&crd, Some(&regex_rule(Some(64)))).len(), 1);
    }

    #[test]
    fn unchanged_schema_keeps_its_over_budget_rule_on_update() {
        let crd = regex_rule(None);
        assert!(validate_crd(&crd, Some(&crd)).is_empty());
    }

    #[test]
    fn fields_of_an_atomic_struct_cannot_use_old_self() {
        let f = json!({"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
            "a": {"type": "string", "maxLength": 8, "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
        }});
        let causes = validate_crd(&probe(f), None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].reason, "FieldValueInvalid");
        assert!(
            causes[0]
                .message
                .ends_with("within spec.validation.openAPIV3Schema.properties[spec].properties[f]")
        );
    }

    #[test]
    fn factor_text_matches_the_servers_formatting() {
        assert_eq!(factor_text(10_066_337, PER_RULE_LIMIT), "1.006634x");
        assert_eq!(factor_text(25_166_082, PER_RULE_LIMIT), "2.5x");
        assert_eq!(factor_text(u64::MAX, PER_RULE_LIMIT), "more than 100x");
    }
}
