"""The Helm chart, rendered with real Helm for several value sets: lint, Kubernetes schemas,
security context, probes, labels, the operator's command line, RBAC against
deploy/kubernetes-permissions.yaml (both directions), and the CRD against crds/."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import CHART, CRD_FILE, NAMESPACE, RELEASE, Rendered, load_permissions

KUBERNETES_VERSION = "1.33.0"
HERE = Path(__file__).resolve().parent

# Value sets every structural test runs against.
NAMESPACED = {
    "replicaCount": 2,
    "image": {"tag": "1.2.3", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "ghcr"}],
    "config": {
        "region": "eu-west-1",
        "watchNamespaces": ["shop", "billing"],
        "secretPrefix": "team-a/dsql",
        "concurrency": 4,
        "secretsManagerWritesPerSecond": 2.5,
        "logFormat": "text",
        "logLevel": "debug,kube=info",
    },
    "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "dsql-credential-operator"}}}],
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "commonLabels": {"cost-center": "42"},
    "serviceAccount": {"annotations": {"example.com/note": "pod identity"}},
    "serviceMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "kube-prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
    "dashboard": {"enabled": True},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "terminationGracePeriodSeconds": 45,
}
MINIMAL = {
    "leaderElection": {"enabled": False},
    "rbac": {"create": False},
    "serviceAccount": {"create": False, "name": "existing-sa"},
    "crds": {"enabled": False},
    "resources": {},
}
OVERRIDDEN_NAME = {"fullnameOverride": "dsqlop", "crds": {"keep": False},
                   "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}}

VALUE_SETS = {
    "defaults": ({}, RELEASE),
    "namespaced": (NAMESPACED, "prod"),
    "minimal": (MINIMAL, RELEASE),
    "overridden-name": (OVERRIDDEN_NAME, "other"),
}


@pytest.fixture(params=sorted(VALUE_SETS))
def case(request, render):
    values, release = VALUE_SETS[request.param]
    return values, release, render(values, name=release)


def fullname(values: dict[str, Any], release: str) -> str:
    if values.get("fullnameOverride"):
        return values["fullnameOverride"]
    return release if "dsql-credential-operator" in release else f"{release}-dsql-credential-operator"


# ---------------------------------------------------------------------------------------------
# Lint and schemas
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_is_clean(helm, name):
    values, _ = VALUE_SETS[name]
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBERNETES_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, json.dumps(report, indent=1)


def crd_schema(kind: str) -> dict[str, Any]:
    return json.loads((HERE / "schemas" / f"{kind.lower()}-v1.json").read_text())


def test_every_rendered_manifest_is_valid_kubernetes(case):
    """kubernetes-validate (strict: unknown fields fail) against Kubernetes 1.33 schemas. The
    CRD validates against apiextensions.k8s.io/v1; ServiceMonitor and PrometheusRule are
    Prometheus Operator CRDs with no schema there, so they are checked against
    tests/python/schemas/<kind>-v1.json."""
    import kubernetes_validate
    _, _, rendered = case
    assert rendered.docs
    for doc in rendered.docs:
        manifest = {k: v for k, v in doc.items() if k != "__template__"}
        if manifest["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
            jsonschema.validate(manifest, crd_schema(manifest["kind"]))
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_kinds_rendered_per_value_set(render):
    policy = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert render({}).kinds() == sorted([
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment",
        "Role", "RoleBinding", "Service", "ServiceAccount"] + policy)
    assert render(NAMESPACED, name="prod").kinds() == sorted([
        "ConfigMap", "ConfigMap", "CustomResourceDefinition", "Deployment", "PodDisruptionBudget",
        "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"] + ["Role", "RoleBinding"] * 3 + policy)
    assert render(MINIMAL).kinds() == sorted(["ConfigMap", "Deployment", "Service"] + policy)


def test_chart_has_no_crds_directory():
    """The CRD comes only from templates/crd.yaml (crds.enabled/keep); a crds/ directory would
    install it a second time, unmanaged."""
    assert not (CHART / "crds").exists()


# ---------------------------------------------------------------------------------------------
# Labels and names
# ---------------------------------------------------------------------------------------------

def test_standard_labels_everywhere(case):
    values, release, rendered = case
    for doc in rendered.docs:
        labels = doc["metadata"].get("labels", {})
        where = f'{doc["kind"]}/{doc["metadata"]["name"]}'
        assert labels.get("helm.sh/chart") == "dsql-credential-operator-0.1.0", where
        assert labels.get("app.kubernetes.io/name") == "dsql-credential-operator", where
        assert labels.get("app.kubernetes.io/instance") == release, where
        assert labels.get("app.kubernetes.io/version") == "0.1.0", where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        for key, value in values.get("commonLabels", {}).items():
            assert labels.get(key) == value, where


def test_names_and_namespaces(case):
    values, release, rendered = case
    name = fullname(values, release)
    for kind in ("Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget"):
        for doc in rendered.all(kind):
            assert doc["metadata"]["name"] == name
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_selectors_match_pod_labels(case):
    _, release, rendered = case
    deployment = rendered.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "dsql-credential-operator",
                        "app.kubernetes.io/instance": release}
    assert selector.items() <= pod_labels.items()
    service = rendered.one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    for doc in rendered.all("PodDisruptionBudget"):
        assert doc["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for doc in rendered.all("ServiceMonitor"):
        assert doc["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert doc["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert [e["port"] for e in doc["spec"]["endpoints"]] == ["http"]
        assert doc["spec"]["endpoints"][0]["path"] == "/metrics"


# ---------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------

def test_default_command_line(render):
    container = render({}).container()
    assert container["args"] == [
        "run",
        "--secret-prefix=dsql",
        "--concurrency=16",
        "--secrets-manager-writes-per-second=5",
        "--rollout-restarts-per-second=0.2",
        "--access-policy=/etc/dsql-credential-operator/access-policy.yaml",
        "--log-format=json",
        "--http-addr=0.0.0.0:8080",
        "--leader-election=true",
        f"--leader-election-namespace={NAMESPACE}",
        "--leader-election-lease-name=dsql-credential-operator",
    ]
    assert "command" not in container, "the image's ENTRYPOINT is the binary"


def test_configured_command_line(render):
    container = render(NAMESPACED, name="prod").container()
    assert container["args"] == [
        "run",
        "--secret-prefix=team-a/dsql",
        "--region=eu-west-1",
        "--namespace=shop",
        "--namespace=billing",
        "--concurrency=4",
        "--secrets-manager-writes-per-second=2.5",
        "--rollout-restarts-per-second=0.2",
        "--access-policy=/etc/dsql-credential-operator/access-policy.yaml",
        "--log-format=text",
        "--http-addr=0.0.0.0:8080",
        "--leader-election=true",
        f"--leader-election-namespace={NAMESPACE}",
        "--leader-election-lease-name=prod-dsql-credential-operator",
    ]
    assert render(MINIMAL).container()["args"][-3] == "--leader-election=false"


def test_image(render):
    assert render({}).container()["image"] == \
        "ghcr.io/dsql-credential-operator/dsql-credential-operator:0.1.0"
    assert render(NAMESPACED, name="prod").container()["image"] == \
        "ghcr.io/dsql-credential-operator/dsql-credential-operator:1.2.3@sha256:" + "a" * 64
    assert render({}).container()["imagePullPolicy"] == "IfNotPresent"


def test_environment(case):
    values, _, rendered = case
    env = rendered.container()["env"]
    by_name = {e["name"]: e for e in env}
    assert len(by_name) == len(env), "duplicate env names"
    assert by_name["RUST_LOG"]["value"] == values.get("config", {}).get("logLevel", "info")
    assert by_name["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert by_name["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    for extra in values.get("extraEnv", []):
        assert by_name[extra["name"]] == extra


def test_hardened_security_context(case):
    _, _, rendered = case
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = rendered.container()["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # The only volume is the access policy ConfigMap, mounted read-only.
    assert [v.get("configMap", {}).get("name", "").endswith("-access-policy") for v in pod["volumes"]] == [True]


def test_probes_and_port(case):
    _, _, rendered = case
    container = rendered.container()
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "--http-addr=0.0.0.0:8080" in container["args"]


def test_pod_spec_passthrough(render):
    pod = render(NAMESPACED, name="prod").one("Deployment")
    spec = pod["spec"]["template"]["spec"]
    assert pod["spec"]["replicas"] == 2
    assert spec["imagePullSecrets"] == NAMESPACED["imagePullSecrets"]
    assert spec["nodeSelector"] == NAMESPACED["nodeSelector"]
    assert spec["tolerations"] == NAMESPACED["tolerations"]
    assert spec["affinity"] == NAMESPACED["affinity"]
    assert spec["topologySpreadConstraints"] == NAMESPACED["topologySpreadConstraints"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["terminationGracePeriodSeconds"] == 45
    annotations = dict(pod["spec"]["template"]["metadata"]["annotations"])
    assert annotations.pop("checksum/access-policy")
    assert annotations == NAMESPACED["podAnnotations"]
    assert pod["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert spec["serviceAccountName"] == "prod-dsql-credential-operator"
    assert spec["automountServiceAccountToken"] is True

    defaults = render({}).one("Deployment")
    assert defaults["spec"]["replicas"] == 1
    dspec = defaults["spec"]["template"]["spec"]
    for absent in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity",
                   "topologySpreadConstraints", "priorityClassName"):
        assert absent not in dspec
    assert dspec["terminationGracePeriodSeconds"] == 30
    # Sized for 10,000 credentials from the scale benchmark (values.yaml, docs/performance.md).
    resources = render({}).container()["resources"]
    assert resources["requests"]["memory"] == "64Mi"
    assert resources["limits"]["memory"] == "128Mi"


def test_service_account(render):
    sa = render({}).one("ServiceAccount")
    assert sa["metadata"]["name"] == "dsql-credential-operator"
    assert sa["metadata"]["namespace"] == NAMESPACE
    assert sa["automountServiceAccountToken"] is True
    assert "Pod Identity" in render({}).text("serviceaccount.yaml")
    sa = render(NAMESPACED, name="prod").one("ServiceAccount")
    assert sa["metadata"]["annotations"] == {"example.com/note": "pod identity"}
    named = render({"serviceAccount": {"name": "custom"}})
    assert named.one("ServiceAccount")["metadata"]["name"] == "custom"
    assert named.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "custom"
    assert all(s["name"] == "custom" for b in named.all("ClusterRoleBinding") + named.all("RoleBinding")
               for s in b["subjects"])
    minimal = render(MINIMAL)
    assert minimal.maybe("ServiceAccount") is None
    assert minimal.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"


def test_pod_disruption_budget(render):
    assert render({}).maybe("PodDisruptionBudget") is None
    assert render(NAMESPACED, name="prod").one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert render(OVERRIDDEN_NAME, name="other").one("PodDisruptionBudget")["spec"] == {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "dsql-credential-operator",
                                     "app.kubernetes.io/instance": "other"}},
        "maxUnavailable": "50%"}
    default_pdb = render({"podDisruptionBudget": {"enabled": True}}).one("PodDisruptionBudget")
    assert default_pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in default_pdb["spec"]


def test_service_monitor(render):
    assert render({}).maybe("ServiceMonitor") is None
    sm = render(NAMESPACED, name="prod").one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus"
    assert sm["spec"]["endpoints"][0]["interval"] == "1m"
    assert sm["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"
    # The credentials' own `namespace` label must survive the scrape for the alerts to name them.
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True


def test_notes_say_what_to_do_next(render):
    notes = render({}).notes
    assert "create-pod-identity-association" in notes
    assert f"--namespace {NAMESPACE}" in notes and "--service-account dsql-credential-operator" in notes
    assert "kind: DsqlCredential" in notes
    assert "kubectl get dsqlcred" in notes
    namespaced = render(NAMESPACED, name="prod").notes
    assert "shop, billing" in namespaced and "namespace: shop" in namespaced
    assert "--service-account prod-dsql-credential-operator" in namespaced
    assert "config.region is empty" in notes and "config.region is empty" not in namespaced


# ---------------------------------------------------------------------------------------------
# RBAC == deploy/kubernetes-permissions.yaml
# ---------------------------------------------------------------------------------------------

VALID_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


def test_permissions_file_is_well_formed():
    permissions = load_permissions()
    assert isinstance(permissions, list) and permissions
    seen = set()
    for entry in permissions:
        assert set(entry) == {"apiGroup", "resource", "verbs", "scope", "why"}, entry
        assert entry["scope"] in {"watched", "release-namespace"}, entry
        assert entry["verbs"] and set(entry["verbs"]) <= VALID_VERBS, entry
        assert len(set(entry["verbs"])) == len(entry["verbs"]), entry
        assert isinstance(entry["why"], str) and len(entry["why"]) > 20, entry
        key = (entry["apiGroup"], entry["resource"])
        assert key not in seen, f"duplicate entry {key}"
        seen.add(key)


def granted(rendered: Rendered, subject_ns: str, subject_name: str) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, where) the ServiceAccount gets; where is "*" for cluster-wide,
    else the namespace. Only rules reached through a binding to that ServiceAccount count."""
    roles = {("ClusterRole", None, r["metadata"]["name"]): r for r in rendered.all("ClusterRole")}
    roles |= {("Role", r["metadata"]["namespace"], r["metadata"]["name"]): r for r in rendered.all("Role")}
    out: set[tuple[str, str, str, str]] = set()
    bindings = rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding")
    for binding in bindings:
        subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]}
        if ("ServiceAccount", subject_ns, subject_name) not in subjects:
            continue
        assert len(subjects) == 1, "bindings name only the operator's ServiceAccount"
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        role = roles.get((ref["kind"], None if ref["kind"] == "ClusterRole" else namespace, ref["name"]))
        assert role is not None, f"binding {binding['metadata']['name']} points at a missing role"
        where = "*" if binding["kind"] == "ClusterRoleBinding" else namespace
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                        out.add((group, resource, verb, where))
    return out


def expected(watch_namespaces: list[str], leader_election: bool) -> set[tuple[str, str, str, str]]:
    out = set()
    for entry in load_permissions():
        if entry["scope"] == "release-namespace":
            if not leader_election:
                continue
            places = [NAMESPACE]
        else:
            places = watch_namespaces or ["*"]
        for verb in entry["verbs"]:
            for where in places:
                out.add((entry["apiGroup"], entry["resource"], verb, where))
    return out


@pytest.mark.parametrize("values,release,watch,leader", [
    ({}, RELEASE, [], True),
    (NAMESPACED, "prod", ["shop", "billing"], True),
    ({"leaderElection": {"enabled": False}}, RELEASE, [], False),
    ({"config": {"watchNamespaces": [NAMESPACE]}}, RELEASE, [NAMESPACE], True),
])
def test_rbac_matches_permissions_file_both_ways(render, values, release, watch, leader):
    rendered = render(values, name=release)
    sa = fullname(values, release)
    have = granted(rendered, NAMESPACE, sa)
    want = expected(watch, leader)
    missing = sorted(want - have)
    extra = sorted(have - want)
    assert not missing, f"calls in deploy/kubernetes-permissions.yaml the chart does not permit: {missing}"
    assert not extra, f"permissions the chart grants that the operator does not use: {extra}"
    if watch:
        assert not rendered.all("ClusterRole") and not rendered.all("ClusterRoleBinding")
    else:
        assert len(rendered.all("ClusterRole")) == 1


@pytest.mark.parametrize("values,release", [
    ({}, RELEASE),
    (NAMESPACED, "prod"),
    ({"config": {"watchNamespaces": [NAMESPACE]}}, RELEASE),
])
def test_the_operator_cannot_read_any_secret(render, values, release):
    """Every verb the ServiceAccount holds on Secrets, in every namespace the chart binds: writes
    only (create, patch, delete), never get/list/watch (or a wildcard that includes them)."""
    rendered = render(values, name=release)
    on_secrets = {(verb, where) for group, resource, verb, where
                  in granted(rendered, NAMESPACE, fullname(values, release))
                  if group in ("", "*") and resource in ("secrets", "*")}
    assert on_secrets, "the chart grants nothing on Secrets: the projection could not be written"
    assert {verb for verb, _ in on_secrets} == {"create", "patch", "delete"}, sorted(on_secrets)


def test_lease_rules_are_limited_to_this_release_lease(render):
    for values, release in (({}, RELEASE), (NAMESPACED, "prod")):
        rendered = render(values, name=release)
        lease_role = next(r for r in rendered.all("Role") if r["metadata"]["name"].endswith("-leader-election"))
        assert lease_role["metadata"]["namespace"] == NAMESPACE
        lease_name = fullname(values, release)
        assert f"--leader-election-lease-name={lease_name}" in rendered.container()["args"]
        for rule in lease_role["rules"]:
            if rule["verbs"] == ["create"]:
                assert "resourceNames" not in rule
            else:
                assert rule["resourceNames"] == [lease_name]


def test_no_rbac_when_disabled(render):
    rendered = render(MINIMAL)
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not rendered.all(kind)
    rendered = render({"rbac": {"create": False}})
    assert not rendered.all("Role") and not rendered.all("ClusterRole")


def test_every_rbac_rule_has_a_comment(render):
    """Every rule in the rendered RBAC says which code path uses it."""
    for values in ({}, NAMESPACED):
        text = render(values, name="prod").text("rbac.yaml")
        rules = re.split(r"\n(?=\s*- apiGroups:)", text)[1:]
        assert rules
        for rule in rules:
            body = rule.split("verbs:")[0]
            assert re.search(r"^\s*#", body, re.M), f"rule without a comment:\n{rule}"


# ---------------------------------------------------------------------------------------------
# CRD == crds/dsqlcredential.yaml
# ---------------------------------------------------------------------------------------------

def test_chart_crd_file_is_a_copy_of_the_generated_crd():
    copy_in_chart = CHART / "files" / "crd.yaml"
    assert copy_in_chart.read_bytes() == CRD_FILE.read_bytes(), (
        "charts/dsql-credential-operator/files/crd.yaml differs from crds/dsqlcredential.yaml: "
        "cp crds/dsqlcredential.yaml charts/dsql-credential-operator/files/crd.yaml")


@pytest.mark.parametrize("keep", [True, False])
def test_rendered_crd_equals_generated_crd(render, keep):
    rendered = render({"crds": {"keep": keep}}).one("CustomResourceDefinition")
    rendered = {k: v for k, v in copy.deepcopy(rendered).items() if k != "__template__"}
    metadata = rendered["metadata"]
    annotations = metadata.pop("annotations", {})
    if keep:
        assert annotations.pop("helm.sh/resource-policy") == "keep"
    else:
        assert "helm.sh/resource-policy" not in annotations
    generated = yaml.safe_load(CRD_FILE.read_text())
    assert annotations == generated["metadata"].get("annotations", {})
    labels = metadata.pop("labels")
    chart_labels = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"}
    assert chart_labels <= set(labels)
    for key in chart_labels:
        labels.pop(key)
    assert labels == generated["metadata"].get("labels", {})
    generated["metadata"].pop("labels", None)
    generated["metadata"].pop("annotations", None)
    assert rendered == generated, "the chart's CRD differs from crds/dsqlcredential.yaml"


def test_crd_can_be_left_out(render):
    assert render({"crds": {"enabled": False}}).maybe("CustomResourceDefinition") is None
    assert "apply the DsqlCredential CRD yourself" in render({"crds": {"enabled": False}}).notes


# ---------------------------------------------------------------------------------------------
# values.yaml documentation
# ---------------------------------------------------------------------------------------------

SECTIONS = {"accessPolicy", "image", "config", "leaderElection", "serviceAccount", "rbac", "admissionPolicy", "crds",
            "livenessProbe", "readinessProbe", "service", "serviceMonitor", "prometheusRule", "dashboard",
            "podDisruptionBudget"}


def test_every_value_is_commented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    section = None
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        if indent == 0:
            section = key
        documented = i > 0 and lines[i - 1].strip().startswith("#")
        if indent == 0 and not documented and key not in SECTIONS:
            undocumented.append(key)
        if indent == 2 and section in SECTIONS and not documented:
            undocumented.append(f"{section}.{key}")
    assert not undocumented, f"values without a comment: {undocumented}"


def test_secret_prefix_default_matches_iam_policy(chart):
    prefix = chart.values["config"]["secretPrefix"]
    policy = json.loads((CHART.parents[1] / "deploy" / "iam" / "operator-policy.json").read_text())
    resources = set()
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith("secretsmanager:") for a in actions):
            resources.add(statement["Resource"])
    assert resources == {f"arn:aws:secretsmanager:*:*:secret:{prefix}/*"}


# ---------------------------------------------------------------------------------------------
# Access policy
# ---------------------------------------------------------------------------------------------

TEAM_POLICY = {"rules": [
    {"name": "payments", "namespaces": ["payments", "payments-*"], "clusters": ["abcdefghijklmnopqrstuvwxyz"],
     "roles": ["pay_*"], "secretNames": ["{prefix}/{namespace}/*"],
     "signingRoles": ["arn:aws:iam::123456789012:role/dsql-{namespace}-*"]},
    {"name": "platform-admins", "namespaces": ["platform"], "allowAdmin": True,
     "requireSigningRole": True, "signingRoles": ["arn:aws:iam::123456789012:role/dsql-admin"]},
]}


def policy_of(rendered: Rendered) -> dict[str, Any]:
    config_map = rendered.one("ConfigMap")
    return yaml.safe_load(config_map["data"]["access-policy.yaml"])


def test_access_policy_is_rendered_mounted_and_passed(render):
    rendered = render({"accessPolicy": TEAM_POLICY}, name="prod")
    config_map = rendered.one("ConfigMap")
    assert config_map["metadata"]["name"] == "prod-dsql-credential-operator-access-policy"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert policy_of(rendered) == TEAM_POLICY
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "access-policy", "configMap": {
        "name": "prod-dsql-credential-operator-access-policy"}}]
    container = rendered.container()
    assert container["volumeMounts"] == [{"name": "access-policy", "mountPath": "/etc/dsql-credential-operator",
                                          "readOnly": True}]
    assert "--access-policy=/etc/dsql-credential-operator/access-policy.yaml" in container["args"]


def test_default_access_policy_denies_admin_and_confines_secret_names(chart, render):
    rules = policy_of(render({}))["rules"]
    assert rules == chart.values["accessPolicy"]["rules"]
    assert [r["name"] for r in rules] == ["default"]
    assert rules[0]["allowAdmin"] is False
    assert rules[0]["secretNames"] == ["{prefix}/{namespace}/*"]
    assert rules[0]["signingRoles"] == []


def test_a_policy_change_restarts_the_operator(render):
    def checksum(values):
        return render(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/access-policy"]
    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"accessPolicy": TEAM_POLICY})
    annotations = render({"podAnnotations": {"a": "b"}}).one("Deployment")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["a"] == "b" and "checksum/access-policy" in annotations


@pytest.mark.parametrize("bad", [
    {"rules": [{"name": "x"}]},
    {"rules": [{"name": "x", "namespaces": []}]},
    {"rules": [{"name": "x", "namespaces": ["a"], "roles": ["admin"]}]},
    {"rules": [{"name": "x", "namespaces": ["a"], "allowAdmn": True}]},
    {"rules": [{"name": "", "namespaces": ["a"]}]},
])
def test_values_schema_refuses_a_malformed_policy(chart, bad):
    values = copy.deepcopy(chart.values)
    values["accessPolicy"] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, json.loads((CHART / "values.schema.json").read_text()))


# ---------------------------------------------------------------------------------------------
# ValidatingAdmissionPolicy confining the operator's ServiceAccount (templates/admission-policy.yaml)
# ---------------------------------------------------------------------------------------------

MANAGED_BY = "app.kubernetes.io/managed-by"


def admission_policy(rendered: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    return rendered.one("ValidatingAdmissionPolicy"), rendered.one("ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_admission_policy_renders_bound_and_valid(render, name):
    import kubernetes_validate
    values, release = VALUE_SETS[name]
    policy, binding = admission_policy(render(values, name=release))
    expected_name = f"{fullname(values, release)}-confinement"
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == expected_name
    assert "namespace" not in policy["metadata"] and "namespace" not in binding["metadata"]
    assert binding["spec"] == {"policyName": expected_name, "validationActions": ["Deny"]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["operations"]
             for r in spec["matchConstraints"]["resourceRules"]}
    assert rules[(("",), ("secrets",))] == ["CREATE", "UPDATE", "DELETE"]
    workloads = [r for (groups, _), r in rules.items() if groups == ("apps",)]
    assert workloads == [["CREATE", "UPDATE", "DELETE"]]
    apps_resources = next(res for (groups, res) in rules if groups == ("apps",))
    for kind in ("deployments", "statefulsets", "daemonsets"):
        assert kind in apps_resources and f"{kind}/*" in apps_resources
    # Every denial names the policy, and both validations are Forbidden (403).
    assert len(spec["validations"]) == 2
    for validation in spec["validations"]:
        assert validation["reason"] == "Forbidden"
        assert validation["message"].startswith(f"ValidatingAdmissionPolicy {expected_name}: ")
    secrets_rule = spec["validations"][0]["expression"]
    assert secrets_rule.count(f"labels[?'{MANAGED_BY}'].orValue('') == 'dsql-credential-operator'") == 2
    assert "oldObject == null" in secrets_rule and "object == null" in secrets_rule
    assert "'kubectl.kubernetes.io/restartedAt'" in spec["validations"][1]["expression"]
    for doc in (policy, binding):
        manifest = {k: v for k, v in doc.items() if k != "__template__"}
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("values", "release", "namespace", "user"), [
    ({}, RELEASE, NAMESPACE, "system:serviceaccount:dsql-system:dsql-credential-operator"),
    (MINIMAL, RELEASE, NAMESPACE, "system:serviceaccount:dsql-system:existing-sa"),
    (OVERRIDDEN_NAME, "other", "ops", "system:serviceaccount:ops:dsqlop"),
    ({"serviceAccount": {"name": "custom"}}, "prod", "team-a", "system:serviceaccount:team-a:custom"),
])
def test_admission_policy_applies_to_the_operator_serviceaccount_only(render, values, release, namespace, user):
    rendered = render(values, name=release, namespace=namespace)
    policy, _ = admission_policy(rendered)
    conditions = policy["spec"]["matchConditions"]
    assert conditions == [{"name": "only-the-operator-serviceaccount",
                           "expression": f"has(request.userInfo.username) && request.userInfo.username == '{user}'"}]
    # The username is built from the same ServiceAccount the Deployment runs as.
    sa = rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert user == f"system:serviceaccount:{namespace}:{sa}"


def test_admission_policy_reads_no_field_whose_absence_would_fail_it(render):
    """On a real kube-apiserver an empty `omitempty` field of the request (e.g. `subResource` on
    a write of a main resource) is absent, and reading it is an evaluation error that
    failurePolicy Fail turns into a denial (issue 18). Every `request.<path>` read must come after
    `has(request.<path>)` in the same expression, and `object` / `oldObject` are only read with
    optional selection (`.?`)."""
    policy, _ = admission_policy(render({}))
    spec = policy["spec"]
    expressions = ([c["expression"] for c in spec["matchConditions"]]
                   + [v["expression"] for v in spec["variables"]]
                   + [v["expression"] for v in spec["validations"]])
    for expression in expressions:
        without_has = re.sub(r"has\(request(\.\w+)+\)", "", expression)
        for path in re.findall(r"\brequest(?:\.\w+)+", without_has):
            assert f"has({path})" in expression, f"{path} read without has() in: {expression}"
        assert not re.search(r"\b(object|oldObject)\.(?!\?)", expression), expression


def test_admission_policy_can_be_switched_off(render):
    for values in ({"admissionPolicy": {"enabled": False}},
                   {**NAMESPACED, "admissionPolicy": {"enabled": False}}):
        rendered = render(values, name="prod")
        assert rendered.maybe("ValidatingAdmissionPolicy") is None
        assert rendered.maybe("ValidatingAdmissionPolicyBinding") is None
        assert rendered.one("Deployment")


def test_admission_policy_value_is_a_boolean(chart):
    schema = json.loads((CHART / "values.schema.json").read_text())
    for bad in ({"enabled": "yes"}, {"enabled": True, "failurePolicy": "Ignore"}, {}):
        values = copy.deepcopy(chart.values)
        values["admissionPolicy"] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(values, schema)
