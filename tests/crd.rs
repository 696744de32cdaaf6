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
