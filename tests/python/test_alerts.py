"""The chart's PrometheusRule, evaluated by Prometheus's own rule engine (`promtool test rules`)
against sample series: each alert fires when it should, with its labels and annotations, and
stays silent for a healthy credential, across an operator restart and while a leader exists.
Also the Grafana dashboard's structure, and its ConfigMap."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import CHART, REPO

HERE = Path(__file__).resolve().parent
JOB = "dsql-credential-operator"
VALUES = {"prometheusRule": {"enabled": True, "additionalAlertLabels": {"team": "db"}, "interval": "30s"},
          "dashboard": {"enabled": True}}
RUNBOOK = "https://github.com/dsql-credential-operator/dsql-credential-operator/blob/main/README.md"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    # Missing promtool fails rather than skips: the alerts would go untested.
    assert found, f"promtool not found: install it with `{INSTALL_HINT}` (scripts/test.sh does when root)"
    return found


@pytest.fixture(scope="module")
def rule(render) -> dict[str, Any]:
    return render(VALUES).one("PrometheusRule")


@pytest.fixture(scope="module")
def rules_file(rule, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    labels = {"job": JOB, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def alert(severity: str, annotations: dict[str, str], anchor: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, "team": "db", **labels},
            "exp_annotations": {**annotations, "runbook_url": f"{RUNBOOK}#{anchor}"}}


def cred_series(metric: str, values: str, name: str, pod: str = "op-a") -> dict[str, str]:
    return series(metric, values, namespace="shop", name=name, pod=pod)


EXPIRY = "dsql_operator_token_expiry_timestamp_seconds"
RENEW = "dsql_operator_credential_renew_before_seconds"
FAILING_SINCE = "dsql_operator_credential_failing_since_timestamp_seconds"
CONDITION = "dsql_operator_credential_condition"
RESTARTS_FAILING = "dsql_operator_credential_rollout_restarts_failing"


def expiring(name: str, value: str) -> dict[str, Any]:
    return alert("warning", {
        "summary": "A DSQL token expires soon and has not been rotated.",
        "description": f"DsqlCredential shop/{name}: its token expires in {value}, past the point where it "
                       "should have been rotated. Clients get new connections refused when it expires."},
        "dsqlcredentialtokenexpiringsoon", namespace="shop", name=name)


def expired(name: str, value: str) -> dict[str, Any]:
    return alert("critical", {
        "summary": "A DSQL token has expired.",
        "description": f"DsqlCredential shop/{name}: its published token expired {value} ago. New database "
                       "connections with it fail."},
        "dsqlcredentialtokenexpired", namespace="shop", name=name)


def failing(name: str, value: str) -> dict[str, Any]:
    return alert("warning", {
        "summary": "Token rotations keep failing for a credential.",
        "description": f"DsqlCredential shop/{name}: rotations have failed for {value} (Degraded=True). The "
                       "operator retries with backoff; the condition's message says why."},
        "dsqlcredentialrotationfailing", namespace="shop", name=name)


def restarts_failing(name: str, value: str) -> dict[str, Any]:
    return alert("warning", {
        "summary": "Workloads of a credential are not restarted onto its new token.",
        "description": f"DsqlCredential shop/{name}: {value} rollout restart(s) of its rolloutRestart workloads keep "
                       "being refused by the API server. The token is published, but those workloads still hold the "
                       "old one and fail when it expires. The Degraded condition (RolloutRestartFailed) and "
                       "status.rolloutRestarts give the server's answer."},
        "dsqlcredentialrolloutrestartfailing", namespace="shop", name=name)


def stalled(name: str) -> dict[str, Any]:
    return alert("warning", {
        "summary": "A credential is Stalled and will not be retried until something changes.",
        "description": f"DsqlCredential shop/{name} is Stalled: the operator does not retry until its spec or "
                       "the conflicting object changes. Its Stalled condition says why."},
        "dsqlcredentialstalled", namespace="shop", name=name)


DOWN = alert("critical", {
    "summary": "No dsql-credential-operator replica is up.",
    "description": f'No target of job "{JOB}" has been scraped successfully for 5m: no DSQL token is being '
                   "rotated, and every token expires within its lifetime."},
    "dsqloperatordown")
NO_LEADER = alert("critical", {
    "summary": "dsql-credential-operator replicas are up but none is reconciling.",
    "description": f'Replicas of job "{JOB}" are up but none has held the leader Lease for 5m: no DSQL token '
                   "is being rotated."},
    "dsqloperatornoleader")


def throttled(operation: str, value: str) -> dict[str, Any]:
    return alert("warning", {
        "summary": "Secrets Manager keeps throttling the operator.",
        "description": f"Secrets Manager has throttled {operation} calls ({value}/s) in every 5-minute window "
                       "for the alert's whole pending period. Rotations are delayed; other writers share the "
                       "account's quota."},
        "dsqloperatorsecretsmanagerthrottled", operation=operation)


def checks(*cases: tuple[str, str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"eval_time": at, "alertname": name, "exp_alerts": expected} for at, name, expected in cases]


# A healthy operator: one leader, both replicas up, for the whole test (tests add to it).
def healthy_operator(minutes: int) -> list[dict[str, str]]:
    return [series("up", f"1x{minutes}", pod="op-a"), series("up", f"1x{minutes}", pod="op-b"),
            series("dsql_operator_leader", f"1x{minutes}", pod="op-a"),
            series("dsql_operator_leader", f"0x{minutes}", pod="op-b")]


# Each promtool test: (what it shows, input series, alert checks). promtool's clock starts at
# Unix time 0, so an expiry of 3600 is "one hour into the test".
PROMTOOL_TESTS = [
    ("expiry: soon once under half of renewBefore remains, then expired; a healthy credential never",
     healthy_operator(80) + [
         cred_series(EXPIRY, "3600x80", "orders"), cred_series(RENEW, "1200x80", "orders"),
         cred_series(EXPIRY, "100000x80", "healthy"), cred_series(RENEW, "1200x80", "healthy")],
     checks(("45m", "DsqlCredentialTokenExpiringSoon", []),  # 15m left: more than 10m
            ("50m30s", "DsqlCredentialTokenExpiringSoon", []),  # under 10m, pending for 1m
            ("55m", "DsqlCredentialTokenExpiringSoon", [expiring("orders", "5m 0s")]),
            ("55m", "DsqlCredentialTokenExpired", []),
            ("65m", "DsqlCredentialTokenExpiringSoon", []),
            ("65m", "DsqlCredentialTokenExpired", [expired("orders", "5m 0s")]),
            ("65m", "DsqlOperatorNoLeader", []),
            ("65m", "DsqlOperatorDown", []))),
    ("restart: the series move to the new pod after a gap; nothing fires and nothing doubles",
     [series("up", "1x20 0 0 1x40", pod="op-a"),
      series("dsql_operator_leader", "1x20 _ _ 1x40", pod="op-a"),
      cred_series(EXPIRY, "100000x20", "orders"), cred_series(RENEW, "1200x20", "orders"),
      cred_series(EXPIRY, "_x22 100000x40", "orders", pod="op-a2"),
      cred_series(RENEW, "_x22 1200x40", "orders", pod="op-a2"),
      series(CONDITION, "_x22 1x40", namespace="shop", name="orders", type="Stalled", status="False", pod="op-a2"),
      cred_series(FAILING_SINCE, "600x20", "late"), cred_series(FAILING_SINCE, "_x22 600x40", "late", pod="op-a2")],
     checks(("30m", "DsqlCredentialTokenExpiringSoon", []),
            ("30m", "DsqlCredentialTokenExpired", []),
            ("30m", "DsqlCredentialStalled", []),
            ("30m", "DsqlOperatorNoLeader", []),
            ("30m", "DsqlOperatorDown", []),
            # The failure streak started at 600s and survives the restart: one alert, not reset.
            ("30m", "DsqlCredentialRotationFailing", [failing("late", "20m 0s")]))),
    ("rotations failing: only after rotationFailingMinutes (15) since the streak started",
     healthy_operator(40) + [cred_series(FAILING_SINCE, "_x10 600x30", "orders")],
     checks(("9m", "DsqlCredentialRotationFailing", []),
            ("24m", "DsqlCredentialRotationFailing", []),  # 14m
            ("26m", "DsqlCredentialRotationFailing", [failing("orders", "16m 0s")]))),
    ("rollout restarts failing: after rolloutRestartFailingFor (10m); one that recovers within it never",
     healthy_operator(40) + [
         cred_series(RESTARTS_FAILING, "_x5 2x35", "orders"),
         cred_series(RESTARTS_FAILING, "_x5 1x5 _x30", "recovers"),
         # The old pod's series ends at a restart and the new one takes over: still one alert.
         cred_series(RESTARTS_FAILING, "_x30 2x10", "orders", pod="op-b")],
     checks(("10m", "DsqlCredentialRolloutRestartFailing", []),
            ("20m", "DsqlCredentialRolloutRestartFailing", [restarts_failing("orders", "2")]),
            ("35m", "DsqlCredentialRolloutRestartFailing", [restarts_failing("orders", "2")]),
            ("20m", "DsqlCredentialRotationFailing", []))),
    ("stalled: after stalledFor (10m); Stalled=False never",
     healthy_operator(30) + [
         series(CONDITION, "1x30", namespace="shop", name="orders", type="Stalled", status="True", pod="op-a"),
         series(CONDITION, "1x30", namespace="shop", name="fine", type="Stalled", status="False", pod="op-a")],
     checks(("5m", "DsqlCredentialStalled", []),
            ("15m", "DsqlCredentialStalled", [stalled("orders")]))),
    ("operator down: no target up for 5m; NoLeader stays silent (Down covers it)",
     [series("up", "1x5 0x20", pod="op-a")],
     checks(("8m", "DsqlOperatorDown", []),
            ("15m", "DsqlOperatorDown", [DOWN]),
            ("15m", "DsqlOperatorNoLeader", []))),
    ("no leader: replicas up, none leading for 5m; a 2m handover does not fire",
     [series("up", "1x40", pod="op-a"), series("up", "1x40", pod="op-b"),
      series("dsql_operator_leader", "1x10 0 0 0x30", pod="op-a"),
      series("dsql_operator_leader", "0x12 1x8 0x20", pod="op-b")],
     checks(("15m", "DsqlOperatorNoLeader", []),
            ("24m", "DsqlOperatorNoLeader", []),  # no leader since 21m: 3m
            ("30m", "DsqlOperatorNoLeader", [NO_LEADER]),
            ("30m", "DsqlOperatorDown", []))),
    ("throttling: sustained for 15m fires; a single burst or successful calls do not",
     healthy_operator(40) + [
         series("dsql_operator_aws_calls_total", "0+6x40", service="secretsmanager", operation="PutSecretValue",
                outcome="throttled", pod="op-a"),
         series("dsql_operator_aws_calls_total", "0 30x40", service="secretsmanager", operation="CreateSecret",
                outcome="throttled", pod="op-a"),
         series("dsql_operator_aws_calls_total", "0+60x40", service="secretsmanager", operation="DescribeSecret",
                outcome="success", pod="op-a")],
     checks(("10m", "DsqlOperatorSecretsManagerThrottled", []),
            ("30m", "DsqlOperatorSecretsManagerThrottled", [throttled("PutSecretValue", "0.10")]))),
]


def test_rules_pass_promtool_check(promtool, rules_file):
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 rules found" in result.stdout, result.stdout


@pytest.mark.parametrize("title,input_series,alert_checks", PROMTOOL_TESTS, ids=[t[0].split(":")[0] for t in PROMTOOL_TESTS])
def test_alerts_fire_as_promtool_evaluates_them(promtool, rules_file, tmp_path, title, input_series, alert_checks):
    unit = {"rule_files": [str(rules_file)], "evaluation_interval": "30s",
            "tests": [{"name": title, "interval": "1m", "input_series": input_series,
                       "alert_rule_test": alert_checks}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_tested_firing_and_silent():
    rules = {name for _, _, cases in PROMTOOL_TESTS for case in cases for name in [case["alertname"]]}
    fired = {case["alertname"] for _, _, cases in PROMTOOL_TESTS for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for _, _, cases in PROMTOOL_TESTS for case in cases if not case["exp_alerts"]}
    assert fired == silent == rules and len(rules) == 8, (fired, silent)


def test_every_alert_has_severity_summary_description_and_a_runbook_row(rule):
    readme = (REPO / "README.md").read_text()
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert rule["spec"]["groups"][0]["interval"] == "30s"
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}, r
        assert r["labels"]["team"] == "db", r
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}, r
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == r["alert"].lower()
        assert f'<a id="{anchor}"></a>' in readme, f"README.md has no runbook row for {r['alert']}"


def test_rule_is_off_by_default_and_valid(render):
    assert render({}).maybe("PrometheusRule") is None
    assert render({}).maybe("ConfigMap") is not None  # the access policy; no dashboard
    assert not [d for d in render({}).all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    schema = json.loads((HERE / "schemas" / "prometheusrule-v1.json").read_text())
    manifest = {k: v for k, v in render(VALUES).one("PrometheusRule").items() if k != "__template__"}
    jsonschema.validate(manifest, schema)


def test_thresholds_come_from_values(render):
    values = {"prometheusRule": {"enabled": True, "rotationFailingMinutes": 30, "stalledFor": "1h",
                                 "rolloutRestartFailingFor": "30m",
                                 "expiringFractionOfRenewBefore": 0.25, "job": "dsql"}}
    rules = {r["alert"]: r for r in render(values).one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert rules["DsqlCredentialRotationFailing"]["expr"].endswith("> 1800")
    assert rules["DsqlCredentialStalled"]["for"] == "1h"
    assert rules["DsqlCredentialRolloutRestartFailing"]["for"] == "30m"
    assert "< 0.25 * max by" in rules["DsqlCredentialTokenExpiringSoon"]["expr"]
    assert all('job="dsql"' in r["expr"] for r in rules.values())


# ---------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------

DASHBOARD = CHART / "dashboards" / "dsql-credential-operator.json"


def test_dashboard_configmap_carries_the_json_with_the_sidecar_label(render):
    maps = [d for d in render(VALUES).all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(maps[0]["data"]["dsql-credential-operator.json"]) == json.loads(DASHBOARD.read_text())
    # Helm merges maps with the defaults: a sidecar with another label drops the default by null.
    relabelled = render({"dashboard": {"enabled": True, "labels": {"dashboards": "ops", "grafana_dashboard": None}}})
    maps = [d for d in relabelled.all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert maps[0]["metadata"]["labels"]["dashboards"] == "ops"
    assert "grafana_dashboard" not in maps[0]["metadata"]["labels"]


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Credentials by condition", "Time to expiry per credential", "Rotations", "Failing credentials",
            "AWS calls by operation and outcome", "Rotation duration", "Leader"} <= titles
    used_variables = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert re.search(r"dsql_operator_\w+", target["expr"]), target
            assert 'job=~"$job"' in target["expr"], target
            used_variables |= set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
    assert used_variables <= set(variables), used_variables
    assert any("histogram_quantile" in t["expr"] for p in dashboard["panels"] for t in p["targets"])
