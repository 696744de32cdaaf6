"""Shared helpers for the chart and deploy/ tests: render the Helm chart with real Helm (v4, via
helm-python-sdk, no helm binary) and parse the manifests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dsql-credential-operator"
CRD_FILE = REPO / "crds" / "dsqlcredential.yaml"
PERMISSIONS_FILE = REPO / "deploy" / "kubernetes-permissions.yaml"
RELEASE = "dsql-credential-operator"
NAMESPACE = "dsql-system"


def tool(name: str) -> str | None:
    """A console script installed next to this interpreter (the test virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


class Rendered:
    """The manifests of one `helm template`, parsed."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = ""
        self.docs: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__template__", path)
                    self.docs.append(doc)

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def maybe(self, kind: str) -> dict[str, Any] | None:
        found = self.all(kind)
        assert len(found) <= 1, f"expected at most one {kind}, got {len(found)}"
        return found[0] if found else None

    def text(self, template: str) -> str:
        return self.files[f"{CHART.name}/templates/{template}"]

    def container(self) -> dict[str, Any]:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]


@pytest.fixture(scope="session")
def helm():
    import helm_python  # a missing package must fail, not skip
    return helm_python


@pytest.fixture(scope="session")
def chart(helm):
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    """render(values, name=..., namespace=...) -> Rendered; schema validation included."""
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
                namespace: str = NAMESPACE) -> Rendered:
        key = repr((values, name, namespace))
        if key not in cache:
            files = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
            cache[key] = Rendered(files)
        return cache[key]

    return _render


def load_permissions() -> list[dict[str, Any]]:
    return yaml.safe_load(PERMISSIONS_FILE.read_text())
