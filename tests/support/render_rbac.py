"""Renders the Helm chart with real Helm (v4, via helm-python-sdk, as tests/python does) and prints
the operator's identity and what confines it as a JSON list: the ServiceAccount, (Cluster)Roles and
their bindings, then the ValidatingAdmissionPolicy and its binding, in that order. The end-to-end
tests apply exactly these to run the operator with only the chart's permissions, under the chart's
admission policy.

Usage: python render_rbac.py <chart dir> <release> <release namespace> <values as JSON>
"""

from __future__ import annotations

import json
import sys

import helm_python
import yaml

KINDS = ["ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding",
         "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def main() -> None:
    chart_dir, release, namespace, values = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    with helm_python.Chart.load(chart_dir) as chart:
        files = chart.render(values, name=release, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") in KINDS:
                # Objects of namespaced kinds without a namespace go to the release namespace.
                if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                    doc["metadata"].setdefault("namespace", namespace)
                docs.append(doc)
    docs.sort(key=lambda d: KINDS.index(d["kind"]))
    json.dump(docs, sys.stdout)


if __name__ == "__main__":
    main()
