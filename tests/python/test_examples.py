"""deploy/examples/: every manifest is valid, and each DsqlCredential validates against the
openAPIV3Schema of the committed CRD (types, enums, patterns, bounds; the CEL rules are exercised
by the Rust end-to-end tests against the fake API server)."""
from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO

KUBERNETES_VERSION = "1.33.0"
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))


def crd_schema() -> dict:
    crd = yaml.safe_load((REPO / "crds" / "dsqlcredential.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_json_schema(node):
    """OpenAPI v3 structural schema -> JSON Schema: `nullable` becomes a null type; the
    x-kubernetes-* extensions are dropped."""
    if isinstance(node, dict):
        out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"secret-volume.yaml", "csi-pod-identity.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_manifests_are_valid(path: Path):
    import kubernetes_validate
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    schema = to_json_schema(crd_schema())
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] == "DsqlCredential":
            jsonschema.validate(doc, schema)
            # A typo in a field name would be pruned silently by the API server: refuse it here.
            spec_props = schema["properties"]["spec"]["properties"]
            assert set(doc["spec"]) <= set(spec_props), set(doc["spec"]) - set(spec_props)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert "DsqlCredential" in kinds and "Deployment" in kinds


def test_schema_conversion_catches_bad_specs():
    schema = to_json_schema(crd_schema())
    bad = {"apiVersion": "dsql.credentials.dev/v1alpha1", "kind": "DsqlCredential",
           "metadata": {"name": "x"}, "spec": {"cluster": {"endpoint": "x"}, "role": "admin",
                                               "token": {"lifetime": "2h-1h"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
