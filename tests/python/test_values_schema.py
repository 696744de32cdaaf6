"""values.schema.json: a valid JSON Schema that accepts the defaults and the documented settings
and rejects what would break the operator, through Helm's own validation."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import CHART, NAMESPACE


def test_schema_is_valid_draft7():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


GOOD = [
    {},
    {"replicaCount": 3},
    {"replicaCount": 0},
    {"config": {"watchNamespaces": ["shop", "billing-2"], "region": "us-east-1"}},
    {"config": {"secretPrefix": "team_a/dsql+creds=.@-"}},
    {"config": {"secretsManagerWritesPerSecond": 0}},
    {"config": {"secretsManagerWritesPerSecond": 0.5, "logFormat": "text", "logLevel": "info,kube=warn"}},
    {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
    {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 0}},
    {"image": {"digest": "sha256:" + "0" * 64, "pullPolicy": "Always"}},
    {"image": {"repository": "registry.example.com:5000/ops/dsql-credential-operator", "tag": "v1.2.3-rc.1"}},
    {"serviceMonitor": {"enabled": True, "interval": "1m30s", "scrapeTimeout": "500ms"}},
    {"extraEnv": [{"name": "AWS_REGION", "value": "us-east-1"},
                  {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
    {"global": {"imageRegistry": "x"}},
]

BAD = {
    "negative replicas": {"replicaCount": -1},
    "replicas not an integer": {"replicaCount": "2"},
    "replicas > 1 without leader election": {"replicaCount": 2, "leaderElection": {"enabled": False}},
    "unknown top-level key": {"replicas": 1},
    "unknown nested key": {"config": {"namespaces": ["shop"]}},
    "log format xml": {"config": {"logFormat": "xml"}},
    "secret prefix with spaces": {"config": {"secretPrefix": "my secrets"}},
    "empty secret prefix": {"config": {"secretPrefix": ""}},
    "zero concurrency": {"config": {"concurrency": 0}},
    "writes above the account quota": {"config": {"secretsManagerWritesPerSecond": 51}},
    "negative writes": {"config": {"secretsManagerWritesPerSecond": -1}},
    "bad region": {"config": {"region": "US East"}},
    "bad namespace name": {"config": {"watchNamespaces": ["Shop_Prod"]}},
    "duplicate namespaces": {"config": {"watchNamespaces": ["shop", "shop"]}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "digest without sha256": {"image": {"digest": "abc"}},
    "leader election not a bool": {"leaderElection": {"enabled": "yes"}},
    "crds keep not a bool": {"crds": {"keep": "true"}},
    "pdb percentage typo": {"podDisruptionBudget": {"enabled": True, "minAvailable": "50"}},
    "service port out of range": {"service": {"port": 70000}},
    "scrape interval not a duration": {"serviceMonitor": {"interval": "often"}},
    "probe period zero": {"livenessProbe": {"periodSeconds": 0}},
    "negative grace period": {"terminationGracePeriodSeconds": -5},
    "extraEnv without name": {"extraEnv": [{"value": "x"}]},
    "pull secret as string": {"imagePullSecrets": ["ghcr"]},
}


@pytest.mark.parametrize("values", GOOD, ids=[json.dumps(v)[:60] for v in GOOD])
def test_schema_accepts(chart, values):
    chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_rejects(chart, helm, case):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(BAD[case]))


@pytest.mark.parametrize("case", ["negative replicas", "log format xml", "secret prefix with spaces",
                                  "unknown top-level key", "replicas > 1 without leader election"])
def test_install_render_refuses_bad_values(chart, helm, case):
    """What `helm install`/`helm template` do: render validates against the schema first."""
    with pytest.raises(helm.HelmValuesError):
        chart.render(BAD[case], name="x", namespace=NAMESPACE, is_install=True)


def test_template_guard_without_schema(chart, helm):
    """The same rules hold in the templates for a PDB with both bounds (the schema allows each)."""
    with pytest.raises(helm.HelmError, match="not both"):
        chart.render({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}},
                     name="x", namespace=NAMESPACE)
