//! The committed CRD under crds/ must equal what the code generates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn committed_crd_is_up_to_date() {
    let generated = dsql_credential_operator::crd::crd_yaml().expect("CRD renders");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dsqlcredential.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/dsqlcredential.yaml is stale: run `cargo run -- crd > crds/dsqlcredential.yaml` and commit it"
    );
}

/// Share of a budget the product CRD may use: far enough below the API server's limits that the
/// next field or rule does not tip it over (a rule at 90% would).
const HEADROOM_PERCENT: u64 = 25;

/// The real API server refuses a CRD whose CEL rules are estimated too expensive (per rule and in
/// total). Estimated with the fake API server's port of that estimator, which replays the
/// recorded verdicts of a real one (crd-cel-cost.json); run with `--nocapture` to see the figures.
#[test]
fn crd_cel_rules_stay_well_inside_the_cost_budgets() {
    use kube::CustomResourceExt;
    use kube_fake_apiserver::cel_cost::{PER_CRD_LIMIT, PER_RULE_LIMIT, estimate_crd};

    let crd = serde_json::to_value(dsql_credential_operator::api::DsqlCredential::crd()).unwrap();
    let schemas = estimate_crd(&crd);
    assert_eq!(schemas.len(), 1, "one schema shared by all versions");
    let schema = &schemas[0];
    assert!(schema.rules.len() >= 10, "every rule is estimated: {:?}", schema.rules);
    let pct = |cost: u64, limit: u64| cost as f64 * 100.0 / limit as f64;
    let mut over = Vec::new();
    for r in &schema.rules {
        println!("{:>12} {:>9.4}%  {}", r.cost, pct(r.cost, PER_RULE_LIMIT), r.field);
        if r.cost * 100 > PER_RULE_LIMIT * HEADROOM_PERCENT {
            over.push(format!(
                "{} costs {:.2}% of the per-rule budget",
                r.field,
                pct(r.cost, PER_RULE_LIMIT)
            ));
        }
    }
    println!(
        "{:>12} {:>9.4}%  total (of the per-CRD budget)",
        schema.total,
        pct(schema.total, PER_CRD_LIMIT)
    );
    if schema.total * 100 > PER_CRD_LIMIT * HEADROOM_PERCENT {
        over.push(format!(
            "the total costs {:.2}% of the per-CRD budget",
            pct(schema.total, PER_CRD_LIMIT)
        ));
    }
    assert!(
        over.is_empty(),
        "over {HEADROOM_PERCENT}% of budget:\n{}",
        over.join("\n")
    );
}
