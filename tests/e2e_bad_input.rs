#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end: a corpus of malformed and hostile DsqlCredential specs. Each one is either refused
//! at admission (422 naming the field or rule), or admitted and then `Stalled` by the operator with
//! a message that says what to change, or (unknown fields) pruned, or (controls) made Ready. All of
//! them go into one namespace served by one operator, next to two healthy credentials that must keep
//! rotating: bad input harms nothing else, never crashes the operator, and a Stalled object never
//! gets a secret.
//!
//! The operator runs with the e2e access policy (`support::env::test_access_policy`): admin
//! allowed, secret names confined to the namespace's own path (plus the foreign path the
//! ownership case uses), no signing roles; requests outside it stall with `PolicyDenied`.

mod support;

use std::time::Duration;

use dsql_credential_operator::api::DsqlCredential;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::{Value, json};
use support::credential::{ENDPOINT, admin_spec, admin_spec_with};
use support::env::{TestEnv, condition};

const FOREIGN_SECRET: &str = "someone-else/database-password";

/// What must become of a spec.
#[derive(Debug, Clone)]
enum Expect {
    /// Admission refuses it with 422; the message contains this (a field path or rule message).
    Rejected(&'static str),
    /// Admitted, then `Stalled=True` with this reason and a message containing this text.
    Stalled {
        reason: &'static str,
        message: &'static str,
    },
    /// Admitted with these (dotted, under `spec`) fields dropped (unknown fields, or nulls the
    /// schema neither allows nor defaults), then Ready.
    Pruned(&'static [&'static str]),
    /// A valid edge case: admitted and Ready.
    Ready,
}

use Expect::{Pruned, Ready, Rejected, Stalled};

struct Case {
    label: &'static str,
    spec: Value,
    expect: Expect,
}

fn case(label: &'static str, spec: Value, expect: Expect) -> Case {
    Case { label, spec, expect }
}

fn invalid_schedule(schedule: &str) -> Value {
    admin_spec_with(json!({"rotation": {"schedule": schedule}}))
}

/// A map of `n` short string entries (tags, extraKeys).
fn entries(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

fn corpus() -> Vec<Case> {
    let long_host = format!("{}.dsql.us-east-1.on.aws", "a".repeat(300));
    vec![
        // ---- wrong types -------------------------------------------------------------------
        case(
            "role is a number",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": 42}),
            Rejected("spec.role"),
        ),
        case(
            "role is an array",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": ["admin"]}),
            Rejected("spec.role"),
        ),
        case(
            "role is an object",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": {"name": "admin"}}),
            Rejected("spec.role"),
        ),
        case(
            "role is a boolean",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": true}),
            Rejected("spec.role"),
        ),
        case(
            "role is null",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": null}),
            Rejected("spec.role"),
        ),
        case(
            "cluster is a string",
            json!({"cluster": ENDPOINT, "role": "admin"}),
            Rejected("spec.cluster"),
        ),
        case(
            "cluster is null",
            json!({"cluster": null, "role": "admin"}),
            Rejected("spec.cluster"),
        ),
        case(
            "endpoint is a number",
            json!({"cluster": {"endpoint": 1234}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "spec is an array",
            json!([{"cluster": {"endpoint": ENDPOINT}, "role": "admin"}]),
            Rejected("spec"),
        ),
        case("spec is a string", json!("admin"), Rejected("spec")),
        case(
            "lifetime is a number of seconds",
            admin_spec_with(json!({"token": {"lifetime": 3600}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime is an object",
            admin_spec_with(json!({"token": {"lifetime": {"hours": 1}}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "renewBefore is a number",
            admin_spec_with(json!({"rotation": {"renewBefore": 600}})),
            Rejected("spec.rotation.renewBefore"),
        ),
        case(
            "rotation is a string",
            admin_spec_with(json!({"rotation": "daily"})),
            Rejected("spec.rotation"),
        ),
        case(
            "recoveryWindowDays is a string",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": "7"}})),
            Rejected("spec.secretsManager.recoveryWindowDays"),
        ),
        case(
            "recoveryWindowDays is a float",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 7.5}})),
            Rejected("spec.secretsManager.recoveryWindowDays"),
        ),
        case(
            "tags is an array",
            admin_spec_with(json!({"secretsManager": {"tags": ["team=shop"]}})),
            Rejected("spec.secretsManager.tags"),
        ),
        case(
            "tag value is a number",
            admin_spec_with(json!({"secretsManager": {"tags": {"team": 1}}})),
            Rejected("spec.secretsManager.tags.team"),
        ),
        // kube-apiserver drops a null the schema does not allow (and cannot default) before
        // validating: the tag is simply absent.
        case(
            "tag value is null",
            admin_spec_with(json!({"secretsManager": {"tags": {"team": null}}})),
            Pruned(&["secretsManager.tags.team"]),
        ),
        case(
            "deletionPolicy is a boolean",
            admin_spec_with(json!({"secretsManager": {"deletionPolicy": true}})),
            Rejected("spec.secretsManager.deletionPolicy"),
        ),
        case(
            "schedule is a number",
            admin_spec_with(json!({"rotation": {"schedule": 30}})),
            Rejected("spec.rotation.schedule"),
        ),
        // ---- missing required fields --------------------------------------------------------
        case("empty spec", json!({}), Rejected("spec.cluster")),
        case(
            "no role",
            json!({"cluster": {"endpoint": ENDPOINT}}),
            Rejected("spec.role"),
        ),
        case("no cluster", json!({"role": "admin"}), Rejected("spec.cluster")),
        case(
            "empty cluster",
            json!({"cluster": {}, "role": "admin"}),
            Rejected("set exactly one of cluster.endpoint or cluster.identifier"),
        ),
        case(
            "identifier without region",
            json!({"cluster": {"identifier": "abc"}, "role": "admin"}),
            Rejected("cluster.region is required with cluster.identifier"),
        ),
        case(
            "region alone",
            json!({"cluster": {"region": "us-east-1"}, "role": "admin"}),
            Rejected("set exactly one of cluster.endpoint or cluster.identifier"),
        ),
        // ---- token.lifetime -----------------------------------------------------------------
        case(
            "lifetime 0s",
            admin_spec_with(json!({"token": {"lifetime": "0s"}})),
            Rejected("token.lifetime must be between 15m and 168h"),
        ),
        case(
            "lifetime -1h",
            admin_spec_with(json!({"token": {"lifetime": "-1h"}})),
            Rejected("spec.token.lifetime in body should match"),
        ),
        case(
            "lifetime 1y (unknown unit)",
            admin_spec_with(json!({"token": {"lifetime": "1y"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime 1e3h (exponent, 1000h)",
            admin_spec_with(json!({"token": {"lifetime": "1e3h"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime 14m59s",
            admin_spec_with(json!({"token": {"lifetime": "14m59s"}})),
            Rejected("token.lifetime must be between 15m and 168h"),
        ),
        case(
            "lifetime 168h1s",
            admin_spec_with(json!({"token": {"lifetime": "168h1s"}})),
            Rejected("token.lifetime must be between 15m and 168h"),
        ),
        case(
            "lifetime 8d-ish in hours",
            admin_spec_with(json!({"token": {"lifetime": "169h"}})),
            Rejected("token.lifetime must be between 15m and 168h"),
        ),
        case(
            "lifetime huge number",
            admin_spec_with(json!({"token": {"lifetime": "99999999999999999999h"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime longer than 32 chars",
            admin_spec_with(json!({"token": {"lifetime": format!("{}1h", "0".repeat(40))}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime empty",
            admin_spec_with(json!({"token": {"lifetime": ""}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime without unit",
            admin_spec_with(json!({"token": {"lifetime": "3600"}})),
            Rejected("spec.token.lifetime"),
        ),
        // ---- rotation.renewBefore -----------------------------------------------------------
        case(
            "renewBefore 0s",
            admin_spec_with(json!({"rotation": {"renewBefore": "0s"}})),
            Rejected("rotation.renewBefore must be at least 1m"),
        ),
        case(
            "renewBefore -1h",
            admin_spec_with(json!({"rotation": {"renewBefore": "-1h"}})),
            Rejected("spec.rotation.renewBefore in body should match"),
        ),
        case(
            "renewBefore 59s",
            admin_spec_with(json!({"rotation": {"renewBefore": "59s"}})),
            Rejected("rotation.renewBefore must be at least 1m"),
        ),
        case(
            "renewBefore equals lifetime",
            admin_spec_with(json!({"rotation": {"renewBefore": "1h"}})),
            Rejected("rotation.renewBefore must be shorter than token.lifetime"),
        ),
        case(
            "renewBefore longer than lifetime",
            admin_spec_with(json!({"rotation": {"renewBefore": "2h"}})),
            Rejected("rotation.renewBefore must be shorter than token.lifetime"),
        ),
        case(
            "renewBefore leaves under 10m",
            admin_spec_with(json!({"rotation": {"renewBefore": "51m"}})),
            Rejected("token.lifetime minus rotation.renewBefore must be at least 10m"),
        ),
        case(
            "renewBefore 1y",
            admin_spec_with(json!({"rotation": {"renewBefore": "1y"}})),
            Rejected("spec.rotation.renewBefore"),
        ),
        // ---- cluster endpoint ---------------------------------------------------------------
        case(
            "endpoint uppercase",
            json!({"cluster": {"endpoint": "ABCDEFGHIJKLMNOPQRSTUVWXYZ.dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with spaces",
            json!({"cluster": {"endpoint": " abc.dsql.us-east-1.on.aws "}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint is an IP address",
            json!({"cluster": {"endpoint": "169.254.169.254"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with ..",
            json!({"cluster": {"endpoint": "abc..dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with trailing dot",
            json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws."}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint in another domain",
            json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws.evil.example"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with userinfo",
            json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws@evil.example"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint as URL",
            json!({"cluster": {"endpoint": "https://abc.dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with port",
            json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws:5432"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint 300-char label",
            json!({"cluster": {"endpoint": long_host}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with Cyrillic homoglyph",
            json!({"cluster": {"endpoint": "\u{0430}bc.dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with %00",
            json!({"cluster": {"endpoint": "abc%00.dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with NUL",
            json!({"cluster": {"endpoint": "abc\u{0}.dsql.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with newline",
            json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws\nevil.example"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint with trailing newline",
            json!({"cluster": {"endpoint": format!("{ENDPOINT}\n")}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint not dsql",
            json!({"cluster": {"endpoint": "abc.rds.us-east-1.on.aws"}, "role": "admin"}),
            Rejected("spec.cluster.endpoint"),
        ),
        case(
            "endpoint and identifier",
            json!({"cluster": {"endpoint": ENDPOINT, "identifier": "abc", "region": "us-east-1"}, "role": "admin"}),
            Rejected("set exactly one of cluster.endpoint or cluster.identifier"),
        ),
        case(
            "endpoint region mismatch",
            json!({"cluster": {"endpoint": ENDPOINT, "region": "us-west-2"}, "role": "admin"}),
            Rejected("cluster.region must match the region in cluster.endpoint"),
        ),
        // ---- cluster identifier / region ----------------------------------------------------
        case(
            "identifier uppercase",
            json!({"cluster": {"identifier": "ABC", "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "identifier 64 chars",
            json!({"cluster": {"identifier": "a".repeat(64), "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "identifier with a dot",
            json!({"cluster": {"identifier": "abc.evil", "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "identifier with ..",
            json!({"cluster": {"identifier": "..", "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "identifier empty",
            json!({"cluster": {"identifier": "", "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "identifier homoglyph",
            json!({"cluster": {"identifier": "\u{0430}bc", "region": "us-east-1"}, "role": "admin"}),
            Rejected("spec.cluster.identifier"),
        ),
        case(
            "region uppercase",
            json!({"cluster": {"identifier": "abc", "region": "US-EAST-1"}, "role": "admin"}),
            Rejected("spec.cluster.region"),
        ),
        case(
            "region with trailing space",
            json!({"cluster": {"identifier": "abc", "region": "us-east-1 "}, "role": "admin"}),
            Rejected("spec.cluster.region"),
        ),
        case(
            "region path traversal",
            json!({"cluster": {"identifier": "abc", "region": "../../etc"}, "role": "admin"}),
            Rejected("spec.cluster.region"),
        ),
        case(
            "region 300 chars",
            json!({"cluster": {"identifier": "abc", "region": format!("us-{}-1", "a".repeat(300))}, "role": "admin"}),
            Rejected("spec.cluster.region"),
        ),
        case(
            "region with newline",
            json!({"cluster": {"identifier": "abc", "region": "us-east-1\nx"}, "role": "admin"}),
            Rejected("spec.cluster.region"),
        ),
        // ---- role ---------------------------------------------------------------------------
        case(
            "role empty",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": ""}),
            Rejected("spec.role"),
        ),
        case(
            "role SQL injection",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "admin; DROP TABLE users"}),
            Rejected("spec.role"),
        ),
        case(
            "role with single quote",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "admin'--"}),
            Rejected("spec.role"),
        ),
        case(
            "role double-quoted",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "\"admin\""}),
            Rejected("spec.role"),
        ),
        case(
            "role 64 chars",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "r".repeat(64)}),
            Rejected("spec.role"),
        ),
        case(
            "role Cyrillic homoglyph of admin",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "\u{0430}dmin"}),
            Rejected("spec.role"),
        ),
        case(
            "role with newline",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "admin\n"}),
            Rejected("spec.role"),
        ),
        case(
            "role with leading digit",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "1admin"}),
            Rejected("spec.role"),
        ),
        case(
            "role with %00",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "admin%00"}),
            Rejected("spec.role"),
        ),
        case(
            "role with space",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "ad min"}),
            Rejected("spec.role"),
        ),
        // ---- database -----------------------------------------------------------------------
        case(
            "database SQL injection",
            admin_spec_with(json!({"database": "postgres; DROP DATABASE x"})),
            Rejected("spec.database"),
        ),
        case(
            "database empty",
            admin_spec_with(json!({"database": ""})),
            Rejected("spec.database"),
        ),
        case(
            "database 64 chars",
            admin_spec_with(json!({"database": "d".repeat(64)})),
            Rejected("spec.database"),
        ),
        case(
            "database with hyphen",
            admin_spec_with(json!({"database": "my-db"})),
            Rejected("spec.database"),
        ),
        case(
            "database URL-breaking",
            admin_spec_with(json!({"database": "postgres?sslmode=disable"})),
            Rejected("spec.database"),
        ),
        // ---- secretsManager.name ------------------------------------------------------------
        case(
            "secret name with spaces",
            admin_spec_with(json!({"secretsManager": {"name": "my secret"}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name with *",
            admin_spec_with(json!({"secretsManager": {"name": "dsql/*"}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name 513 chars",
            admin_spec_with(json!({"secretsManager": {"name": "s".repeat(513)}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name unicode",
            admin_spec_with(json!({"secretsManager": {"name": "dsql/\u{00fc}ber"}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name empty",
            admin_spec_with(json!({"secretsManager": {"name": ""}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name with newline",
            admin_spec_with(json!({"secretsManager": {"name": "dsql/a\nb"}})),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "secret name as ARN",
            admin_spec_with(
                json!({"secretsManager": {"name": "arn:aws:secretsmanager:us-east-1:111122223333:secret:x"}}),
            ),
            Rejected("spec.secretsManager.name"),
        ),
        case(
            "kmsKeyId empty",
            admin_spec_with(json!({"secretsManager": {"kmsKeyId": ""}})),
            Rejected("spec.secretsManager.kmsKeyId"),
        ),
        // ---- tags ---------------------------------------------------------------------------
        case(
            "tag key aws:",
            admin_spec_with(json!({"secretsManager": {"tags": {"aws:cloudformation:stack-name": "x"}}})),
            Rejected("tag keys may not start with 'aws:'"),
        ),
        case(
            "tag key operator managed-by",
            admin_spec_with(json!({"secretsManager": {"tags": {"dsql.credentials.dev/managed-by": "me"}}})),
            Rejected("tag keys may not start with 'aws:' or 'dsql.credentials.dev/'"),
        ),
        case(
            "tag key operator namespace",
            admin_spec_with(json!({"secretsManager": {"tags": {"dsql.credentials.dev/namespace": "kube-system"}}})),
            Rejected("tag keys may not start with 'aws:' or 'dsql.credentials.dev/'"),
        ),
        case(
            "tag key AWS: (upper case)",
            admin_spec_with(json!({"secretsManager": {"tags": {"AWS:team": "x"}}})),
            Rejected("tag keys may not start with 'aws:'"),
        ),
        case(
            "tag key empty",
            admin_spec_with(json!({"secretsManager": {"tags": {"": "x"}}})),
            Rejected("tag keys"),
        ),
        case(
            "tag key with * and value with <>",
            admin_spec_with(json!({"secretsManager": {"tags": {"a*b": "x<>"}}})),
            Rejected("tag keys"),
        ),
        // ---- durations the API server's Go parser refuses (found crashing the operator when a
        // lenient CEL admitted them; now a pattern refuses them, and the controller parses with
        // its own panic-free parser) ----------------------------------------------------------
        case(
            "lifetime with trailing text",
            admin_spec_with(json!({"token": {"lifetime": "1h junk"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime with an exponent",
            admin_spec_with(json!({"token": {"lifetime": "1.5e1m"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "lifetime with a negative part",
            admin_spec_with(json!({"token": {"lifetime": "2h-1h"}})),
            Rejected("spec.token.lifetime"),
        ),
        case(
            "renewBefore with a negative part",
            admin_spec_with(json!({"rotation": {"renewBefore": "30m-10m"}})),
            Rejected("spec.rotation.renewBefore"),
        ),
        case(
            "47 tags",
            admin_spec_with(json!({"secretsManager": {"tags": entries(47)}})),
            Rejected("spec.secretsManager.tags"),
        ),
        case(
            "tag key 129 chars",
            admin_spec_with(json!({"secretsManager": {"tags": {"k".repeat(129): "v"}}})),
            Rejected("keys are 1 to 128 and values at most 256"),
        ),
        case(
            "tag value 257 chars",
            admin_spec_with(json!({"secretsManager": {"tags": {"team": "v".repeat(257)}}})),
            Rejected("spec.secretsManager.tags.team"),
        ),
        // ---- kubernetesSecret ---------------------------------------------------------------
        case(
            "extraKeys template 4097 chars",
            admin_spec_with(json!({"kubernetesSecret": {"extraKeys": {"URL": "u".repeat(4097)}}})),
            Rejected("spec.kubernetesSecret.extraKeys.URL"),
        ),
        case(
            "33 extraKeys",
            admin_spec_with(json!({"kubernetesSecret": {"extraKeys": entries(33)}})),
            Rejected("spec.kubernetesSecret.extraKeys"),
        ),
        // ---- recoveryWindowDays / deletionPolicy --------------------------------------------
        case(
            "recoveryWindowDays -1",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": -1}})),
            Rejected("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30"),
        ),
        case(
            "recoveryWindowDays 1",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 1}})),
            Rejected("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30"),
        ),
        case(
            "recoveryWindowDays 6",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 6}})),
            Rejected("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30"),
        ),
        case(
            "recoveryWindowDays 31",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 31}})),
            Rejected("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30"),
        ),
        case(
            "recoveryWindowDays i64 max",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": i64::MAX}})),
            Rejected("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30"),
        ),
        case(
            "deletionPolicy lowercase",
            admin_spec_with(json!({"secretsManager": {"deletionPolicy": "delete"}})),
            Rejected("spec.secretsManager.deletionPolicy"),
        ),
        case(
            "deletionPolicy Orphan",
            admin_spec_with(json!({"secretsManager": {"deletionPolicy": "Orphan"}})),
            Rejected("spec.secretsManager.deletionPolicy"),
        ),
        case(
            "deletionPolicy empty",
            admin_spec_with(json!({"secretsManager": {"deletionPolicy": ""}})),
            Rejected("spec.secretsManager.deletionPolicy"),
        ),
        // ---- schedule, refused at admission -------------------------------------------------
        case(
            "schedule empty",
            invalid_schedule(""),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule 10k chars",
            invalid_schedule(&format!("rate({} minutes)", "9".repeat(10_000))),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule upper-case RATE",
            invalid_schedule("RATE(30 minutes)"),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule prose",
            invalid_schedule("every 30 minutes"),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule trailing space",
            invalid_schedule("rate(30 minutes) "),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule trailing newline",
            invalid_schedule("rate(30 minutes)\n"),
            Rejected("spec.rotation.schedule"),
        ),
        case(
            "schedule unclosed",
            invalid_schedule("rate(30 minutes"),
            Rejected("spec.rotation.schedule"),
        ),
        // ---- schedule, only the controller can judge ----------------------------------------
        case(
            "rate(0 minutes)",
            invalid_schedule("rate(0 minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "must be at least 1",
            },
        ),
        case(
            "rate(1 minutes) (plural)",
            invalid_schedule("rate(1 minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "use 'rate(1 minute)'",
            },
        ),
        case(
            "rate(1 minute)",
            invalid_schedule("rate(1 minute)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at least 10m apart",
            },
        ),
        case(
            "rate(9 minutes)",
            invalid_schedule("rate(9 minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at least 10m apart",
            },
        ),
        case(
            "cron every minute",
            invalid_schedule("cron(* * * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at least 10m apart",
            },
        ),
        case(
            "cron every 5 minutes",
            invalid_schedule("cron(0/5 * * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at least 10m apart",
            },
        ),
        case(
            "cron twice an hour 5m apart",
            invalid_schedule("cron(0,5 * * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at least 10m apart",
            },
        ),
        case(
            "cron with 5 fields",
            invalid_schedule("cron(0 * * * *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "add '*' at the end",
            },
        ),
        case(
            "cron with 7 fields",
            invalid_schedule("cron(0 0 * * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "remove the first field",
            },
        ),
        case(
            "cron with both ?",
            invalid_schedule("cron(0 10 ? * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "only one of day-of-month or day-of-week may be '?'",
            },
        ),
        case(
            "cron with neither ?",
            invalid_schedule("cron(0 10 * * * *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "must be '?'",
            },
        ),
        case(
            "cron year in the past",
            invalid_schedule("cron(0 0 1 1 ? 2020)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "never fires",
            },
        ),
        case(
            "cron year range in the past",
            invalid_schedule("cron(0 10 * * ? 2019-2021)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "never fires",
            },
        ),
        case(
            "cron February 30",
            invalid_schedule("cron(0 0 30 2 ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "never fires",
            },
        ),
        case(
            "cron minute 60",
            invalid_schedule("cron(60 * * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "out of range",
            },
        ),
        case(
            "cron weekday 8",
            invalid_schedule("cron(0 0 ? * 8 *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "out of range",
            },
        ),
        case(
            "cron year 2200",
            invalid_schedule("cron(0 0 1 1 ? 2200)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "out of range",
            },
        ),
        case(
            "rate with full-width digits",
            invalid_schedule("rate(\u{ff13}\u{ff10} minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "must be a positive whole number",
            },
        ),
        case(
            "rate negative",
            invalid_schedule("rate(-30 minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "must be a positive whole number",
            },
        ),
        case(
            "rate nested parens",
            invalid_schedule("rate((30 minutes))"),
            Stalled {
                reason: "InvalidSchedule",
                message: "unexpected parenthesis",
            },
        ),
        case(
            "cron nested parens",
            invalid_schedule("cron(0 (10) * * ? *)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "unexpected parenthesis",
            },
        ),
        case(
            "rate()",
            invalid_schedule("rate()"),
            Stalled {
                reason: "InvalidSchedule",
                message: "with a whole number and a unit",
            },
        ),
        case(
            "cron()",
            invalid_schedule("cron()"),
            Stalled {
                reason: "InvalidSchedule",
                message: "exactly 6 fields",
            },
        ),
        case(
            "rate unknown unit",
            invalid_schedule("rate(2 fortnights)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "unknown rate unit",
            },
        ),
        case(
            "rate 1001 days",
            invalid_schedule("rate(1001 days)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at most 1000 days",
            },
        ),
        case(
            "rate 20-digit number",
            invalid_schedule("rate(99999999999999999999 minutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "at most 1000 days",
            },
        ),
        case(
            "rate with unicode unit",
            invalid_schedule("rate(30 m\u{0456}nutes)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "unknown rate unit",
            },
        ),
        case(
            "cron with shell metacharacters",
            invalid_schedule("cron(0 10 * * ? *;rm -rf /)"),
            Stalled {
                reason: "InvalidSchedule",
                message: "exactly 6 fields",
            },
        ),
        // ---- someone else's secret ----------------------------------------------------------
        case(
            "secret owned by someone else",
            admin_spec_with(json!({"secretsManager": {"name": FOREIGN_SECRET}})),
            Stalled {
                reason: "SecretOwnedByOther",
                message: FOREIGN_SECRET,
            },
        ),
        // ---- outside the access policy ------------------------------------------------------
        case(
            "secret name in another namespace's path",
            admin_spec_with(json!({"secretsManager": {"name": "dsql-e2e/other-namespace/victim"}})),
            Stalled {
                reason: "PolicyDenied",
                message: "does not allow secret name \"dsql-e2e/other-namespace/victim\"",
            },
        ),
        case(
            "secret name outside the operator's prefix",
            admin_spec_with(json!({"secretsManager": {"name": "prod/payments/db"}})),
            Stalled {
                reason: "PolicyDenied",
                message: "does not allow secret name \"prod/payments/db\"",
            },
        ),
        case(
            "signing role the policy does not list",
            admin_spec_with(
                json!({"token": {"lifetime": "1h", "signingRoleArn": "arn:aws:iam::123456789012:role/anything"}}),
            ),
            Stalled {
                reason: "PolicyDenied",
                message: "does not allow signing role",
            },
        ),
        case(
            "signing role with a lifetime over the chained-session hour",
            admin_spec_with(json!({"token": {"lifetime": "2h", "signingRoleArn": "arn:aws:iam::123456789012:role/x"}})),
            Rejected("at most 1h with token.signingRoleArn"),
        ),
        case(
            "signing role that is a user ARN",
            admin_spec_with(json!({"token": {"signingRoleArn": "arn:aws:iam::123456789012:user/alice"}})),
            Rejected("spec.token.signingRoleArn"),
        ),
        case(
            "signing role with a short account id",
            admin_spec_with(json!({"token": {"signingRoleArn": "arn:aws:iam::12345:role/x"}})),
            Rejected("spec.token.signingRoleArn"),
        ),
        // ---- unknown fields are pruned, not rejected ----------------------------------------
        case(
            "unknown top-level field",
            admin_spec_with(json!({"password": "hunter2"})),
            Pruned(&["password"]),
        ),
        case(
            "unknown nested fields",
            json!({"cluster": {"endpoint": ENDPOINT, "port": 5432}, "role": "admin", "token": {"lifetime": "1h", "lifetimeSeconds": 5}}),
            Pruned(&["cluster.port", "token.lifetimeSeconds"]),
        ),
        case(
            "unknown __proto__",
            admin_spec_with(
                json!({"__proto__": {"admin": true}, "secretsManager": {"deletionPolicy": "Retain", "owner": "x"}}),
            ),
            Pruned(&["__proto__", "secretsManager.owner"]),
        ),
        // ---- valid edge cases (controls) ----------------------------------------------------
        case(
            "recoveryWindowDays 0",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 0}})),
            Ready,
        ),
        case(
            "recoveryWindowDays 7",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 7}})),
            Ready,
        ),
        case(
            "recoveryWindowDays 30",
            admin_spec_with(json!({"secretsManager": {"recoveryWindowDays": 30}})),
            Ready,
        ),
        case(
            "lifetime 15m, renewBefore 5m",
            admin_spec_with(json!({"token": {"lifetime": "15m"}, "rotation": {"renewBefore": "5m"}})),
            Ready,
        ),
        case(
            "lifetime 168h",
            admin_spec_with(json!({"token": {"lifetime": "168h"}})),
            Ready,
        ),
        case(
            "lifetime 15m0.5s",
            admin_spec_with(json!({"token": {"lifetime": "15m0.5s"}})),
            Ready,
        ),
        case(
            "lifetime 0.25h",
            admin_spec_with(json!({"token": {"lifetime": "0.25h"}, "rotation": {"renewBefore": "1m"}})),
            Ready,
        ),
        case("rate(10 minutes)", invalid_schedule("rate(10 minutes)"), Ready),
        case("cron every 10 minutes", invalid_schedule("cron(0/10 * * * ? *)"), Ready),
        case("rate(1000 days)", invalid_schedule("rate(1000 days)"), Ready),
        case(
            "identifier + region, 63-char identifier",
            json!({"cluster": {"identifier": "a".repeat(63), "region": "us-east-1"}, "role": "admin"}),
            Ready,
        ),
        case(
            "endpoint + matching region",
            json!({"cluster": {"endpoint": ENDPOINT, "region": "us-east-1"}, "role": "admin"}),
            Ready,
        ),
        case(
            "role 63 chars, database with $",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": format!("r{}", "_".repeat(62)), "database": "db$1"}),
            Ready,
        ),
        case(
            "role ADMIN is not admin",
            json!({"cluster": {"endpoint": ENDPOINT}, "role": "ADMIN"}),
            Ready,
        ),
        case(
            "secret name 512 chars",
            admin_spec_with(json!({"secretsManager": {"name": format!("someone-else/{}", "n".repeat(499))}})),
            Ready,
        ),
        case(
            "46 tags, deletionPolicy Retain",
            admin_spec_with(json!({"secretsManager": {"tags": entries(46), "deletionPolicy": "Retain"}})),
            Ready,
        ),
        // ---- loginCheck ----------------------------------------------------------------------
        case(
            "loginCheck.enabled a string",
            admin_spec_with(json!({"loginCheck": {"enabled": "yes"}})),
            Rejected("spec.loginCheck.enabled"),
        ),
        case(
            "loginCheck.caBundle empty",
            admin_spec_with(json!({"loginCheck": {"caBundle": ""}})),
            Rejected("spec.loginCheck.caBundle"),
        ),
        case(
            "loginCheck.caBundle over 64 KiB",
            admin_spec_with(json!({"loginCheck": {"caBundle": "A".repeat(65_537)}})),
            Rejected("spec.loginCheck.caBundle"),
        ),
        case(
            "loginCheck.caBundle not PEM",
            admin_spec_with(json!({"loginCheck": {"caBundle": "not a certificate"}})),
            Stalled {
                reason: "InvalidSpec",
                message: "loginCheck.caBundle holds no PEM certificate",
            },
        ),
        case(
            "loginCheck.caBundle PEM that is not a certificate",
            admin_spec_with(
                json!({"loginCheck": {"caBundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}),
            ),
            Stalled {
                reason: "InvalidSpec",
                message: "loginCheck.caBundle certificate 1",
            },
        ),
        // Disabled: no check, so the endpoint (which resolves nowhere in these tests) is not tried.
        case(
            "loginCheck disabled",
            admin_spec_with(json!({"loginCheck": {"enabled": false}})),
            Ready,
        ),
    ]
}

/// The spec as stored, untyped, so pruned fields can be looked for.
async fn raw_spec(env: &TestEnv, name: &str) -> Value {
    let resource = ApiResource::erase::<DsqlCredential>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.kube.clone(), &env.namespace, &resource);
    api.get(name).await.unwrap().data["spec"].clone()
}

fn lookup<'a>(spec: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(spec, |v, k| v.get(k))
}

/// Secrets in moto tagged as belonging to credential `name` in the test's namespace.
async fn secrets_owned_by(env: &TestEnv, name: &str) -> Vec<String> {
    let client = aws_sdk_secretsmanager::Client::new(&env.check_sdk);
    let mut found = Vec::new();
    let mut pages = client
        .list_secrets()
        .include_planned_deletion(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for s in page.unwrap().secret_list.unwrap_or_default() {
            let tags = s.tags.clone().unwrap_or_default();
            let tag = |k: &str| {
                tags.iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value().map(str::to_owned))
            };
            if tag("dsql.credentials.dev/name").as_deref() == Some(name)
                && tag("dsql.credentials.dev/namespace").as_deref() == Some(env.namespace.as_str())
            {
                found.push(s.name.unwrap_or_default());
            }
        }
    }
    found
}

fn is_stalled(c: &DsqlCredential) -> bool {
    condition(c, "Stalled").is_some_and(|s| s.status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_bad_specs_is_rejected_or_stalled_and_harms_nothing_else() {
    let started = std::time::Instant::now();
    let env = TestEnv::new("bad-input").await;
    env.create_foreign_secret(FOREIGN_SECRET).await;
    let operator = env.start_operator();

    // Two healthy credentials first.
    env.create_credential("healthy-admin", admin_spec()).await.unwrap();
    env.create_credential(
        "healthy-reader",
        json!({"cluster": {"identifier": "zyxwvutsrqponmlkjihgfedcba", "region": "eu-west-1"}, "role": "app_reader",
               "token": {"lifetime": "2h"}, "rotation": {"schedule": "rate(30 minutes)"}}),
    )
    .await
    .unwrap();
    let healthy = ["healthy-admin", "healthy-reader"];
    for name in healthy {
        env.wait_ready(name, 1).await;
    }

    let cases = corpus();
    let count = |f: fn(&Expect) -> bool| cases.iter().filter(|c| f(&c.expect)).count();
    let (rejected, stalled, pruned, ready) = (
        count(|e| matches!(e, Rejected(_))),
        count(|e| matches!(e, Stalled { .. })),
        count(|e| matches!(e, Pruned(_))),
        count(|e| matches!(e, Ready)),
    );
    eprintln!(
        "corpus: {} cases: {rejected} rejected, {stalled} stalled, {pruned} pruned, {ready} ready",
        cases.len()
    );
    assert!(rejected + stalled >= 60, "at least 60 bad inputs");

    // Everything goes in while the operator runs; admission verdicts are checked on the spot.
    let mut failures = Vec::new();
    let mut admitted = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let name = format!("case-{i:03}");
        let result = env.create_credential(&name, c.spec.clone()).await;
        match (&c.expect, result) {
            (Rejected(needle), Err(kube::Error::Api(status))) => {
                if status.code != 422 || !status.message.contains(needle) {
                    failures.push(format!(
                        "{name} {:?}: expected 422 naming {needle:?}, got {} {:?}",
                        c.label, status.code, status.message
                    ));
                }
            }
            (Rejected(needle), other) => failures.push(format!(
                "{name} {:?}: expected 422 naming {needle:?}, got {:?}",
                c.label,
                other.map(|o| o.spec)
            )),
            (_, Ok(_)) => admitted.push((name, c)),
            (_, Err(e)) => failures.push(format!("{name} {:?}: expected admission, got {e}", c.label)),
        }
    }

    // Then the operator's verdicts.
    for (name, c) in &admitted {
        match &c.expect {
            Stalled { reason, message } => {
                let got = env.wait_for(name, Duration::from_secs(20), "Stalled", is_stalled).await;
                let s = condition(&got, "Stalled").unwrap();
                if s.reason != *reason || !s.message.contains(message) {
                    failures.push(format!(
                        "{name} {:?}: expected Stalled {reason} with {message:?}, got {} {:?}",
                        c.label, s.reason, s.message
                    ));
                }
                let ready = condition(&got, "Ready").unwrap();
                if ready.status != "False" {
                    failures.push(format!("{name} {:?}: Stalled but Ready={}", c.label, ready.status));
                }
            }
            Pruned(paths) => {
                env.wait_ready(name, 1).await;
                let spec = raw_spec(&env, name).await;
                for path in *paths {
                    if lookup(&spec, path).is_some() {
                        failures.push(format!(
                            "{name} {:?}: spec.{path} should have been dropped at admission but was kept: {spec}",
                            c.label
                        ));
                    }
                }
            }
            Ready => {
                let got = env.wait_ready(name, 1).await;
                assert_eq!(condition(&got, "Stalled").unwrap().status, "False", "{}", c.label);
            }
            Rejected(_) => unreachable!(),
        }
    }

    // The healthy ones rotate normally after all of that.
    let mut due = Vec::new();
    for name in healthy {
        let c = env.credentials().get(name).await.unwrap();
        due.push(c.status.unwrap().next_rotation_time.unwrap().0);
    }
    env.clock.advance_to(due.into_iter().max().unwrap());
    let mut healthy_secrets = Vec::new();
    for name in healthy {
        let c = env.wait_ready(name, 2).await;
        assert_eq!(condition(&c, "Degraded").unwrap().status, "False", "{name}");
        let secret = c.status.unwrap().secret_name.unwrap();
        assert_eq!(
            env.secret_versions(&secret).await.len(),
            2,
            "{name}: one version per rotation"
        );
        healthy_secrets.push(secret);
    }

    // Stalled objects stay Stalled after the clock moved, and never got a secret.
    for (name, c) in &admitted {
        if let Stalled { .. } = c.expect {
            let got = env.credentials().get(name).await.unwrap();
            assert!(is_stalled(&got), "{name} {:?} is still Stalled", c.label);
            let status = got.status.unwrap();
            assert!(
                status.secret_arn.is_none() && status.rotation_count.unwrap_or(0) == 0,
                "{}",
                c.label
            );
            let default_name = format!("{}/{}/{name}", env.config.secret_name_prefix, env.namespace);
            assert!(
                env.describe_secret(&default_name).await.is_none(),
                "{}: secret created",
                c.label
            );
            assert!(
                secrets_owned_by(&env, name).await.is_empty(),
                "{}: secret created",
                c.label
            );
        }
    }
    // The foreign secret is untouched.
    assert_eq!(env.secret_versions(FOREIGN_SECRET).await.len(), 1);
    assert_eq!(
        env.secret_document(FOREIGN_SECRET).await,
        json!({"owner": "someone else"})
    );

    assert!(!operator.is_finished(), "the operator is still running (no panic)");
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    operator.stop().await;
    let ids: Vec<&str> = healthy_secrets.iter().map(String::as_str).collect();
    env.assert_no_token_leaks(&ids).await;
    eprintln!("corpus test took {:?}", started.elapsed());
}
