"""The chart and its neighbours on a real Kubernetes API server (tests/control-plane: etcd,
kube-apiserver and kube-controller-manager of one Kubernetes release, on 127.0.0.1).

Every template the chart renders is sent to the server with `kubectl apply --server-side
--validate=strict` (unknown or duplicate fields are errors, also in custom resources): the
DsqlCredential CRD, RBAC in both layouts (all namespaces: ClusterRole + ClusterRoleBinding;
config.watchNamespaces: a Role + RoleBinding per namespace), the ValidatingAdmissionPolicy and its
binding, the ServiceMonitor and PrometheusRule (after the Prometheus Operator's own CRDs), the
dashboard ConfigMap, the PodDisruptionBudget, the Service, ServiceAccount and access-policy
ConfigMap, and the Deployment as a server-side dry run (no node runs pods). Each object must be
accepted and then be on the server with its kind and name. The RBAC and the admission policy are
then exercised as the operator's ServiceAccount (impersonated): what each layout grants and
refuses, and a Secret without the operator's label refused by the policy. deploy/examples are
applied the same way.

A SecretProviderClass as src/projection/provider_class.rs builds it is created against the
Secrets Store CSI driver's own CRD, owned by a real DsqlCredential (the garbage collector runs,
so a dangling owner would delete it), and its `objects` string is checked by spc_objects.py
(the AWS provider's documented rules; its own Go parser is not to be had here, see
tests/neighbour-crds/README.md).

The neighbours' CRDs come from the Go modules of the projects that publish them, pinned in
tests/neighbour-crds/go.mod (checksums in its go.sum), resolved with `go mod download -json`.

Needs DSQL_OPERATOR_CONTROL_PLANE (the built tests/control-plane binary; scripts/test.sh sets
it), kubectl and go on PATH: without them the tests fail, they do not skip.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, Rendered
from spc_objects import InvalidObjects, descriptors

NEIGHBOURS = REPO / "tests" / "neighbour-crds"
CSI_DRIVER_MODULE = "sigs.k8s.io/secrets-store-csi-driver"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
CSI_DRIVER_CRDS = [
    "config/crd/bases/secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
    "config/crd/bases/secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml",
]
PROMETHEUS_OPERATOR_CRDS = [
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
]
FIELD_MANAGER = "chart-on-control-plane-test"
CRDS_DIR_MANAGER = "crds-dir"  # crds/ applied beside the chart's copy, as `kubectl apply -f crds/` would
READY_TIMEOUT = 240  # tests/control-plane gives up on its own after 3 minutes

# The two chart layouts. Every optional template is switched on in both.
EVERYTHING_ON = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "interval": "1m", "additionalAlertLabels": {"team": "platform"}},
    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "config": {"region": "us-east-1"},
}
CLUSTER = {"release": "dsql-credential-operator", "namespace": "dsql-system", "values": EVERYTHING_ON}
WATCHED = ["shop", "analytics"]
SCOPED = {
    "release": "scoped",
    "namespace": "dsql-scoped",
    # The CRD is cluster-scoped and already installed by the first layout.
    "values": {**EVERYTHING_ON, "config": {"region": "us-east-1", "watchNamespaces": WATCHED},
               "crds": {"enabled": False}},
}

# src/aws/payload.rs CREDENTIAL_KEYS: each is one jmesPath entry of the SecretProviderClass.
CREDENTIAL_KEYS = ["engine", "host", "port", "dbname", "username", "password", "region", "expiresAt"]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:111122223333:secret:dsql/shop/orders-db-AbCdEf"


# ---------------------------------------------------------------------------------------------
# The control plane and kubectl
# ---------------------------------------------------------------------------------------------

def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory) -> Path:
    """Starts tests/control-plane in a temporary directory; yields the admin kubeconfig."""
    binary = os.environ.get("DSQL_OPERATOR_CONTROL_PLANE")
    if not binary:
        pytest.fail("DSQL_OPERATOR_CONTROL_PLANE is unset: build tests/control-plane "
                    "(scripts/test.sh does: go build -o target/kube-control-plane) and export its path")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"DSQL_OPERATOR_CONTROL_PLANE={binary} is not an executable file")
    for needed in ("kubectl", "go"):
        if shutil.which(needed) is None:
            pytest.fail(f"{needed} is not on PATH; these tests need it")

    workdir = tmp_path_factory.mktemp("control-plane")
    stderr_path = workdir / "control-plane.stderr"
    started = time.monotonic()
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([binary, "--dir", str(workdir / "plane")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdout():
        assert proc.stdout is not None
        for line in proc.stdout:  # keeps draining after `ready`, so the pipe never fills
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read_stdout, daemon=True).start()

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    kubeconfig = None
    deadline = started + READY_TIMEOUT
    while kubeconfig is None:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is not None and line.startswith("ready "):
            kubeconfig = Path(line.removeprefix("ready ").strip())
        elif line is None:
            stop()
            logs = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted((workdir / "plane").glob("*.log")))
            pytest.fail(f"the control plane ({binary}) did not print `ready <kubeconfig>` within "
                        f"{READY_TIMEOUT}s (exit status {proc.returncode})\n--- stderr\n{_tail(stderr_path)}\n{logs}")
    print(f"\ncontrol plane ready in {time.monotonic() - started:.1f}s: {kubeconfig}")
    try:
        yield kubeconfig
    finally:
        stop()


class Kubectl:
    """kubectl against the control plane's admin kubeconfig."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(cmd[2:])} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
        return done

    def apply(self, doc: dict[str, Any], *, dry_run: bool = False, as_user: str | None = None,
              check: bool = True, field_manager: str = FIELD_MANAGER) -> subprocess.CompletedProcess:
        """Server-side apply of one object, strict field validation; stdout is the server's
        answer (the object as stored, or as it would be with dry_run)."""
        args = ["apply", "--server-side", f"--field-manager={field_manager}", "--validate=strict",
                "-o", "json", "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        if as_user:
            args.append(f"--as={as_user}")
        return self.run(*args, stdin=json.dumps(clean(doc)), check=check)

    def get(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The object named by `doc` (kind, apiVersion, name, namespace) as on the server."""
        done = self.run("get", "-o", "json", "-f", "-", stdin=json.dumps(clean(doc)), check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr or "not found" in done.stderr:
                return None
            pytest.fail(f"kubectl get {doc['kind']}/{doc['metadata']['name']}: {done.stderr}")
        return one_object(done.stdout)

    def can_i(self, user: str, verb: str, resource: str, namespace: str | None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={user}"]
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
        done = self.run(*args, check=False)
        answer = done.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
        return answer == "yes"


def one_object(stdout: str) -> dict[str, Any]:
    """kubectl's JSON output for one object from `-f -`: the object, or a List of just it."""
    out = json.loads(stdout)
    if out.get("kind") == "List":
        assert len(out["items"]) == 1, f"expected one object, got {len(out['items'])}"
        return out["items"][0]
    return out


def clean(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered document without the test-only keys conftest adds."""
    return {k: v for k, v in doc.items() if not k.startswith("__")}


@pytest.fixture(scope="session")
def kubectl(control_plane) -> Kubectl:
    k = Kubectl(control_plane)
    # /version, not `kubectl version`: the test binary carries no release version string.
    server = json.loads(k.run("get", "--raw", "/version").stdout)
    client = json.loads(k.run("version", "--client", "-o", "json").stdout)["clientVersion"]
    print(f"server {server['major']}.{server['minor']} ({server['goVersion']}), kubectl {client['gitVersion']}")
    return k


# ---------------------------------------------------------------------------------------------
# The neighbours' CRDs, from their pinned Go modules
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def neighbour_modules() -> dict[str, Path]:
    """module path -> its directory in the Go module cache, at the version tests/neighbour-crds
    pins (downloaded from the Go module proxy and checked against go.sum if not cached)."""
    if shutil.which("go") is None:
        pytest.fail("go is not on PATH; the neighbours' CRDs come from Go modules (tests/neighbour-crds)")
    modules = [CSI_DRIVER_MODULE, PROMETHEUS_OPERATOR_MODULE]
    done = subprocess.run(["go", "mod", "download", "-json", *modules], cwd=NEIGHBOURS,
                          capture_output=True, text=True, timeout=300)
    found: dict[str, Path] = {}
    decoder = json.JSONDecoder()
    text, at = done.stdout, 0
    while text[at:].strip():
        info, end = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
        at = end
        if info.get("Error"):
            pytest.fail(f"go mod download {info['Path']}@{info.get('Version')}: {info['Error']}")
        found[info["Path"]] = Path(info["Dir"])
    if done.returncode != 0 or set(found) != set(modules):
        pytest.fail(f"go mod download in {NEIGHBOURS} ({done.returncode}): {done.stderr}{done.stdout}")
    return found


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def install_crds(kubectl: Kubectl, crds: list[dict[str, Any]], field_manager: str = FIELD_MANAGER) -> None:
    for crd in crds:
        assert crd["kind"] == "CustomResourceDefinition", crd["kind"]
        stored = one_object(kubectl.apply(crd, field_manager=field_manager).stdout)
        assert stored["metadata"]["uid"]
    for crd in crds:
        kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                    f"customresourcedefinition/{crd['metadata']['name']}")


@pytest.fixture(scope="session")
def neighbour_crds(kubectl, neighbour_modules) -> dict[str, dict[str, Any]]:
    """The Secrets Store CSI driver's and the Prometheus Operator's CRDs, installed and
    Established; name -> CRD as published."""
    paths = [neighbour_modules[CSI_DRIVER_MODULE] / p for p in CSI_DRIVER_CRDS]
    paths += [neighbour_modules[PROMETHEUS_OPERATOR_MODULE] / p for p in PROMETHEUS_OPERATOR_CRDS]
    crds = [doc for p in paths for doc in load_docs(p)]
    install_crds(kubectl, crds)
    return {c["metadata"]["name"]: c for c in crds}


@pytest.fixture(scope="session")
def namespaces(kubectl) -> list[str]:
    names = [CLUSTER["namespace"], SCOPED["namespace"], *WATCHED]
    for name in names:
        kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return names


# ---------------------------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------------------------

def render_layout(render, layout: dict[str, Any]) -> Rendered:
    return render(copy.deepcopy(layout["values"]), name=layout["release"], namespace=layout["namespace"])


def apply_rendered(kubectl: Kubectl, rendered: Rendered) -> dict[tuple[str, str], dict[str, Any]]:
    """Applies every rendered object (CRDs first, waiting until Established; the Deployment as a
    server-side dry run); returns key(object) -> the server's answer. Fails listing every object
    the server refused."""
    crds = rendered.all("CustomResourceDefinition")
    install_crds(kubectl, crds)
    answers = {key(c): kubectl.get(c) for c in crds}
    refused = []
    for doc in rendered.docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        done = kubectl.apply(doc, dry_run=doc["kind"] == "Deployment", check=False)
        if done.returncode != 0:
            refused.append(f"{doc['kind']}/{doc['metadata']['name']} ({doc['__template__']}): {done.stderr.strip()}")
            continue
        answers[key(doc)] = one_object(done.stdout)
    assert not refused, "the API server refused:\n" + "\n".join(refused)
    return answers


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def check_on_server(kubectl: Kubectl, rendered: Rendered, answers) -> None:
    for doc in rendered.docs:
        k = key(doc)
        answer = answers[k]
        assert answer["kind"] == doc["kind"] and answer["apiVersion"] == doc["apiVersion"], k
        assert answer["metadata"]["name"] == doc["metadata"]["name"], k
        assert answer["metadata"].get("namespace") == doc["metadata"].get("namespace"), k
        stored = kubectl.get(doc)
        if doc["kind"] == "Deployment":
            assert stored is None, "a server-side dry run must not create the Deployment"
            continue
        assert stored is not None, f"{k} is not on the server after apply"
        assert stored["kind"] == doc["kind"] and stored["metadata"]["uid"] == answer["metadata"]["uid"], k
        for label, value in doc["metadata"].get("labels", {}).items():
            assert stored["metadata"]["labels"].get(label) == value, (k, label)


def check_dry_run_deployment(rendered: Rendered, answers, layout: dict[str, Any]) -> None:
    """The server's dry-run answer is the Deployment as it would be stored: defaulted and
    validated, with the chart's container intact."""
    deployment = rendered.one("Deployment")
    answer = answers[key(deployment)]
    assert answer["metadata"]["namespace"] == layout["namespace"]
    assert answer["metadata"].get("uid"), "dry-run answers carry a uid"
    container = answer["spec"]["template"]["spec"]["containers"][0]
    rendered_container = rendered.container()
    assert container["image"] == rendered_container["image"]
    assert container["args"] == rendered_container["args"]
    assert container["terminationMessagePolicy"] == "File", "server defaults applied"
    assert answer["spec"]["strategy"]["type"], "server defaults applied"


SECRET = "secrets"


def service_account(rendered: Rendered) -> str:
    sa = rendered.one("ServiceAccount")
    return f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"


def test_cluster_layout_every_template_accepted(kubectl, neighbour_crds, namespaces, render):
    rendered = render_layout(render, CLUSTER)
    kinds = set(rendered.kinds())
    assert kinds >= {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                     "ValidatingAdmissionPolicyBinding", "ServiceMonitor", "PrometheusRule", "ConfigMap",
                     "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}, kinds
    assert not rendered.all("RoleBinding") or all(
        rb["metadata"]["namespace"] == CLUSTER["namespace"] for rb in rendered.all("RoleBinding"))
    answers = apply_rendered(kubectl, rendered)
    check_on_server(kubectl, rendered, answers)
    check_dry_run_deployment(rendered, answers, CLUSTER)

    # The dashboard ConfigMap carries the JSON the Grafana sidecar imports.
    dashboard = next(d for d in rendered.all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    stored = kubectl.get(dashboard)
    assert json.loads(stored["data"]["dsql-credential-operator.json"])["panels"]

    # The PrometheusRule's groups survived the CRD's schema (pruning would drop unknown fields).
    for kind in ("PrometheusRule", "ServiceMonitor"):
        assert_subset(rendered.one(kind)["spec"], kubectl.get(rendered.one(kind))["spec"], f"{kind}.spec")

    # RBAC as the server's authorizer sees it: every namespace, no reads of Secrets.
    sa = service_account(rendered)
    for ns in ("default", "shop"):
        assert kubectl.can_i(sa, "patch", "dsqlcredentials.dsql.credentials.dev", ns)
        assert kubectl.can_i(sa, "create", SECRET, ns)
        assert kubectl.can_i(sa, "patch", "secretproviderclasses.secrets-store.csi.x-k8s.io", ns)
        assert not kubectl.can_i(sa, "get", SECRET, ns), "the operator must not read Secrets"
    assert kubectl.can_i(sa, "watch", "dsqlcredentials.dsql.credentials.dev", None)


def test_namespaced_layout_every_template_accepted(kubectl, neighbour_crds, namespaces, render):
    # The CRD comes from the cluster layout (or crds/ in the examples test); it may already be there.
    install_crds(kubectl, render_layout(render, CLUSTER).all("CustomResourceDefinition"))
    rendered = render_layout(render, SCOPED)
    assert not rendered.all("ClusterRoleBinding"), "watchNamespaces: no cluster-wide grant"
    bound = {rb["metadata"]["namespace"] for rb in rendered.all("RoleBinding")}
    assert bound >= set(WATCHED), bound
    answers = apply_rendered(kubectl, rendered)
    check_on_server(kubectl, rendered, answers)
    check_dry_run_deployment(rendered, answers, SCOPED)

    sa = service_account(rendered)
    for ns in WATCHED:
        assert kubectl.can_i(sa, "patch", "dsqlcredentials.dsql.credentials.dev", ns)
        assert kubectl.can_i(sa, "list", "dsqlcredentials.dsql.credentials.dev", ns)
        assert kubectl.can_i(sa, "create", SECRET, ns)
    for ns in ("default", CLUSTER["namespace"]):
        assert not kubectl.can_i(sa, "patch", "dsqlcredentials.dsql.credentials.dev", ns), ns
        assert not kubectl.can_i(sa, "create", SECRET, ns), ns
    assert not kubectl.can_i(sa, "list", "dsqlcredentials.dsql.credentials.dev", None)


def test_admission_policy_binding_confines_the_operator(kubectl, neighbour_crds, namespaces, render):
    """The binding is in force on the server: as the operator's ServiceAccount (which RBAC lets
    create Secrets everywhere in the cluster layout), a Secret without the managed-by label is
    refused by the policy, one with it is admitted (both as server-side dry runs)."""
    rendered = render_layout(render, CLUSTER)
    answers = apply_rendered(kubectl, rendered)
    policy = rendered.one("ValidatingAdmissionPolicy")
    binding = rendered.one("ValidatingAdmissionPolicyBinding")
    assert answers[key(binding)]["spec"]["policyName"] \
        == policy["metadata"]["name"]
    sa = service_account(rendered)

    def secret(labels):
        return {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "probe", "namespace": "default", "labels": labels},
                "stringData": {"k": "v"}}

    # The API server loads policies through an informer: allow it a moment to see the new one.
    deadline = time.monotonic() + 30
    while True:
        foreign = kubectl.apply(secret({"app": "someone-else"}), dry_run=True, as_user=sa, check=False)
        if foreign.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert foreign.returncode != 0, "the policy let the operator create a Secret it does not manage"
    assert policy["metadata"]["name"] in foreign.stderr and "Forbidden" in foreign.stderr + foreign.stdout, \
        foreign.stderr
    own = kubectl.apply(secret({"app.kubernetes.io/managed-by": "dsql-credential-operator"}),
                        dry_run=True, as_user=sa, check=False)
    assert own.returncode == 0, own.stderr
    # Another user is not evaluated by the policy at all.
    assert kubectl.apply(secret({"app": "someone-else"}), dry_run=True).returncode == 0


def assert_subset(sent: Any, stored: Any, where: str) -> None:
    """Everything sent is stored as sent (the server may add defaults, never drop or change)."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), where
        for k, v in sent.items():
            assert k in stored, f"{where}.{k} was pruned"
            assert_subset(v, stored[k], f"{where}.{k}")
    else:
        assert sent == stored, f"{where}: sent {sent!r}, stored {stored!r}"


# ---------------------------------------------------------------------------------------------
# crds/ and deploy/examples
# ---------------------------------------------------------------------------------------------

def test_crds_dir_and_deploy_examples_accepted(kubectl, neighbour_crds, namespaces):
    install_crds(kubectl, load_docs(REPO / "crds" / "dsqlcredential.yaml"), field_manager=CRDS_DIR_MANAGER)
    examples = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
    assert examples
    refused = []
    for path in examples:
        for doc in load_docs(path):
            done = kubectl.apply(doc, dry_run=doc["kind"] == "Deployment", check=False)
            if done.returncode != 0:
                refused.append(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {done.stderr.strip()}")
                continue
            answer = one_object(done.stdout)
            assert answer["kind"] == doc["kind"] and answer["metadata"]["name"] == doc["metadata"]["name"]
            stored = kubectl.get(doc)
            if doc["kind"] == "Deployment":
                assert stored is None
            else:
                assert stored is not None and stored["metadata"]["uid"] == answer["metadata"]["uid"]
                if doc["kind"] == "DsqlCredential":
                    assert_subset(doc["spec"], stored["spec"], f"{path.name} {doc['metadata']['name']}.spec")
    assert not refused, "the API server refused:\n" + "\n".join(refused)


# ---------------------------------------------------------------------------------------------
# The SecretProviderClass the operator generates
# ---------------------------------------------------------------------------------------------

def provider_class_objects(secret_arn: str) -> str:
    """`spec.parameters.objects` exactly as src/projection/provider_class.rs formats it."""
    objects = (f'- objectName: "{secret_arn}"\n  objectType: "secretsmanager"\n'
               f'  objectAlias: "credential.json"\n  jmesPath:\n')
    for key in CREDENTIAL_KEYS:
        objects += f'    - path: "{key}"\n      objectAlias: "{key}"\n'
    return objects


def provider_class_body(namespace: str, credential: str, uid: str, name: str, secret_arn: str,
                        region: str) -> dict[str, Any]:
    """The SecretProviderClass as src/projection/provider_class.rs provider_class_body builds it
    (labels and owner reference from src/projection/objects.rs ObjectOwner)."""
    return {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "dsql-credential-operator",
                       "dsql.credentials.dev/credential": credential},
            "ownerReferences": [{"apiVersion": "dsql.credentials.dev/v1alpha1", "kind": "DsqlCredential",
                                 "name": credential, "uid": uid, "controller": True}],
        },
        "spec": {
            "provider": "aws",
            "parameters": {"usePodIdentity": "true", "region": region,
                           "objects": provider_class_objects(secret_arn)},
        },
    }


def test_secret_provider_class_accepted_by_the_csi_driver_crd(kubectl, neighbour_crds, namespaces):
    assert "secretproviderclasses.secrets-store.csi.x-k8s.io" in neighbour_crds
    install_crds(kubectl, load_docs(REPO / "crds" / "dsqlcredential.yaml"), field_manager=CRDS_DIR_MANAGER)
    credential = {"apiVersion": "dsql.credentials.dev/v1alpha1", "kind": "DsqlCredential",
                  "metadata": {"name": "orders-db", "namespace": "shop"},
                  "spec": {"cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"},
                           "role": "orders_app", "secretProviderClass": {"enabled": True, "name": "orders-db"}}}
    owner = one_object(kubectl.apply(credential).stdout)
    spc = provider_class_body("shop", "orders-db", owner["metadata"]["uid"], "orders-db", SECRET_ARN, "us-east-1")
    answer = one_object(kubectl.apply(spc).stdout)
    assert answer["kind"] == "SecretProviderClass" and answer["metadata"]["uid"]
    # Still there after the garbage collector has had time to look at its owner reference.
    time.sleep(2)
    stored = kubectl.get(spc)
    assert stored is not None, "the SecretProviderClass was deleted (garbage-collected?)"
    assert_subset(spc["spec"], stored["spec"], "SecretProviderClass.spec")
    assert stored["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert stored["spec"]["parameters"]["usePodIdentity"] == "true"

    # The CRD's schema does refuse what it should: a provider that is not a string.
    bad = copy.deepcopy(spc)
    bad["metadata"]["name"] = "orders-db-bad"
    bad["spec"]["provider"] = {"aws": True}
    refused = kubectl.apply(bad, check=False)
    assert refused.returncode != 0 and "spec.provider" in refused.stderr, refused.stderr


def test_secret_provider_class_objects_parse():
    objects = provider_class_objects(SECRET_ARN)
    (descriptor,) = descriptors(objects, "us-east-1")
    assert descriptor["objectName"] == SECRET_ARN
    assert descriptor["objectType"] == "secretsmanager"
    assert descriptor["objectAlias"] == "credential.json"
    assert [(j["path"], j["objectAlias"]) for j in descriptor["jmesPath"]] == [(k, k) for k in CREDENTIAL_KEYS]
    assert {"path": "password", "objectAlias": "password"} in descriptor["jmesPath"]

    # The check can fail: an ARN of another region, a jmesPath entry without its alias, a broken
    # indentation, a repeated file name, a misspelt field, a path that is not JMESPath.
    bad = {
        "in eu-west-1": (objects, "eu-west-1"),
        "jmesPath entry": (objects.replace('      objectAlias: "password"\n', ""), "us-east-1"),
        "not YAML": (objects.replace("\n  objectType", "\n objectType"), "us-east-1"),
        "repeated": (objects.replace('objectAlias: "host"', 'objectAlias: "port"'), "us-east-1"),
        "unknown descriptor fields": (objects.replace("objectType:", "objectTyp:"), "us-east-1"),
        "does not compile": (objects.replace('path: "host"', 'path: "host["'), "us-east-1"),
    }
    for reason, (text, region) in bad.items():
        with pytest.raises(InvalidObjects, match=reason):
            descriptors(text, region)


def test_spc_objects_command_line():
    """The command line the Rust end-to-end tests can call (see spc_objects.py)."""
    import sys
    script = [sys.executable, str(Path(__file__).with_name("spc_objects.py")), "--region", "us-east-1"]
    ok = subprocess.run(script, input=provider_class_objects(SECRET_ARN), capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (descriptor,) = json.loads(ok.stdout)
    assert descriptor["objectName"] == SECRET_ARN and descriptor["jmesPath"][5] == {
        "path": "password", "objectAlias": "password"}
    bad = subprocess.run(script, input="- objectName: not-an-arn\n", capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("invalid objects: objectName"), bad.stderr
