"""Checks the `spec.parameters.objects` string of a SecretProviderClass for the AWS provider of the
Secrets Store CSI driver, as the operator generates it (src/projection/provider_class.rs).

This is NOT the AWS provider's own parser (`provider.NewSecretDescriptorList` of
github.com/aws/secrets-store-csi-driver-provider-aws): that Go module is not served by the module
proxy this project can reach (see tests/neighbour-crds/README.md). It applies the rules that
parser documents and enforces, a little more strictly:
- the string is a non-empty YAML list of descriptor mappings with only the provider's fields
  (the provider ignores unknown ones, which would hide a misspelt field: refused here);
- objectName is a full Secrets Manager ARN (`arn:<partition>:secretsmanager:<region>:...`)
  whose region is the SecretProviderClass's `region` parameter; objectType, when given, is
  `secretsmanager`;
- every jmesPath entry has exactly a non-empty `path` and `objectAlias`, and the path compiles
  with the JMESPath reference implementation (python `jmespath`, which the provider's
  go-jmespath ports);
- every file name (objectAlias, or objectName without one, and each jmesPath objectAlias) is
  unique, not `..` and without `/`.

Command line, for the Rust end-to-end tests (run with the test virtualenv's python,
DSQL_OPERATOR_TEST_PYTHON in scripts/test.sh):

    $DSQL_OPERATOR_TEST_PYTHON tests/python/spc_objects.py --region REGION < objects

reads the objects string on stdin; exit 0 and the parsed descriptors as one JSON array on stdout
when valid; exit 1 and one line `invalid objects: <reason>` on stderr when not (exit 2: usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

# The fields of the AWS provider's SecretDescriptor (provider/secret_descriptor.go).
DESCRIPTOR_FIELDS = {"objectName", "objectAlias", "objectVersion", "objectVersionLabel", "objectType",
                     "jmesPath", "failoverObject"}


class InvalidObjects(ValueError):
    pass


def descriptors(objects: str, region: str) -> list[dict[str, Any]]:
    """The objects string parsed; raises InvalidObjects saying what is wrong."""
    import jmespath  # boto3's dependency, in the test virtualenv

    try:
        parsed = yaml.safe_load(objects)
    except yaml.YAMLError as e:
        raise InvalidObjects(f"not YAML: {e}") from e
    if not isinstance(parsed, list) or not parsed:
        raise InvalidObjects(f"not a non-empty YAML list: {parsed!r}")
    names: set[str] = set()
    for entry in parsed:
        if not isinstance(entry, dict):
            raise InvalidObjects(f"descriptor is not a mapping: {entry!r}")
        unknown = set(entry) - DESCRIPTOR_FIELDS
        if unknown:
            raise InvalidObjects(f"unknown descriptor fields {sorted(unknown)}")
        name = entry.get("objectName")
        arn = name.split(":", 5) if isinstance(name, str) else []
        if len(arn) < 6 or arn[0] != "arn" or not arn[1] or arn[2] != "secretsmanager" or not arn[5]:
            raise InvalidObjects(f"objectName is not a Secrets Manager ARN: {name!r}")
        if arn[3] != region:
            raise InvalidObjects(f"objectName is not a Secrets Manager ARN in {region}: {name!r}")
        if entry.get("objectType", "secretsmanager") != "secretsmanager":
            raise InvalidObjects(f"objectType {entry['objectType']!r} does not match the ARN")
        aliases = [entry.get("objectAlias") or name]
        jmes_entries = entry.get("jmesPath") or []
        if not isinstance(jmes_entries, list):
            raise InvalidObjects(f"jmesPath is not a list: {jmes_entries!r}")
        for jmes in jmes_entries:
            if not isinstance(jmes, dict) or set(jmes) != {"path", "objectAlias"} \
                    or not all(isinstance(v, str) and v for v in jmes.values()):
                raise InvalidObjects(f"jmesPath entry needs exactly a path and an objectAlias: {jmes!r}")
            try:
                jmespath.compile(jmes["path"])
            except jmespath.exceptions.JMESPathError as e:
                raise InvalidObjects(f"jmesPath path {jmes['path']!r} does not compile: {e}") from e
            aliases.append(jmes["objectAlias"])
        for alias in aliases:
            if not isinstance(alias, str) or alias in names or "/" in alias or alias in ("", ".", ".."):
                raise InvalidObjects(f"file name {alias!r} repeated or not a plain file name")
            names.add(alias)
    return parsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True, help="the SecretProviderClass's region parameter")
    args = parser.parse_args(argv)
    try:
        parsed = descriptors(sys.stdin.read(), args.region)
    except InvalidObjects as e:
        print(f"invalid objects: {e}", file=sys.stderr)
        return 1
    json.dump(parsed, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
