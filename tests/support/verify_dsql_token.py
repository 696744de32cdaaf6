"""Verify an Aurora DSQL IAM auth token by recomputing it with botocore.

Input (stdin, one JSON object; never on the command line):
  {"token": str, "hostname": str, "region": str, "admin": bool,
   "access_key_id": str, "secret_access_key": str, "session_token": str|null}

The token's own X-Amz-Date and X-Amz-Expires are taken as the signing time and
lifetime; botocore's SigV4 clock is frozen at that time and the token is
generated again with boto3's dsql client and the given static credentials.
The two must be byte-for-byte equal (after removing an optional "https://"),
except that the order of the query parameters may differ: botocore and the AWS
SDK for Rust place X-Amz-Security-Token differently, and SigV4 signs the sorted
query. Each "name=value" piece must still match exactly, encoding included.

Output (stdout, one JSON object): {"ok": true} or {"ok": false, "problems": [...]}.
Problems name query parameters, never their values; the token, signature and
credentials are never printed.
Exit status: 0 match, 1 mismatch, 2 could not verify (bad input, botocore changed).
"""

import datetime
import json
import os
import sys
from unittest import mock
from urllib.parse import parse_qsl, unquote_plus, urlsplit

# Nothing from the developer's own AWS setup may leak into the recomputation.
for _name in list(os.environ):
    if _name.startswith("AWS_"):
        del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import boto3  # noqa: E402
import botocore  # noqa: E402
import botocore.auth  # noqa: E402

SCHEME = "https://"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


def emit(ok, problems=(), code=None):
    out = {"ok": ok}
    if problems:
        out["problems"] = list(problems)
    print(json.dumps(out))
    sys.exit(0 if ok else (code if code is not None else 1))


def fail(message):
    emit(False, [message], code=2)


def strip_scheme(url):
    return url[len(SCHEME):] if url.startswith(SCHEME) else url


def split_token(token):
    """Return (host, path, [(name, value), ...]) with decoded query pairs."""
    parts = urlsplit(SCHEME + token)
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    return parts.netloc, parts.path, pairs


def single(pairs, name):
    values = [v for (k, v) in pairs if k == name]
    if len(values) != 1:
        emit(False, [f"token must carry exactly one {name} query parameter, found {len(values)}"])
    return values[0]


def raw_parts(token):
    base, _, query = token.partition("?")
    return base, sorted(query.split("&")) if query else []


def raw_pairs(token):
    """(name, still-encoded value) pairs; names decoded, values untouched."""
    _, pieces = raw_parts(token)
    pairs = []
    for piece in pieces:
        name, _, value = piece.partition("=")
        pairs.append((unquote_plus(name), value))
    return pairs


def same_up_to_parameter_order(actual, expected):
    return raw_parts(actual) == raw_parts(expected)


def describe_difference(actual, expected):
    a_host, a_path, a_pairs = split_token(actual)
    e_host, e_path, e_pairs = split_token(expected)
    problems = []
    if a_host != e_host:
        problems.append("hostname differs")
    if a_path != e_path:
        problems.append("path differs")
    a_names = [k for k, _ in a_pairs]
    e_names = [k for k, _ in e_pairs]
    for name in sorted(set(e_names) - set(a_names)):
        problems.append(f"missing query parameter {name}")
    for name in sorted(set(a_names) - set(e_names)):
        problems.append(f"unexpected query parameter {name}")
    for name in sorted(set(a_names) & set(e_names)):
        a_vals = [v for k, v in a_pairs if k == name]
        e_vals = [v for k, v in e_pairs if k == name]
        if a_vals != e_vals:
            if name == "X-Amz-Signature":
                problems.append("signature differs")
            else:
                problems.append(f"query parameter {name} differs")
    if not problems:
        a_raw = raw_pairs(actual)
        e_raw = raw_pairs(expected)
        for name in sorted(set(a_names)):
            if [v for k, v in a_raw if k == name] != [v for k, v in e_raw if k == name]:
                problems.append(f"query parameter {name} encoding differs")
    if not problems:
        problems.append("query string differs")
    return problems


def main():
    try:
        req = json.load(sys.stdin)
    except ValueError as exc:
        fail(f"stdin is not JSON: {type(exc).__name__}")
    for key in ("token", "hostname", "region", "admin", "access_key_id", "secret_access_key"):
        if key not in req:
            fail(f"input lacks {key}")

    token = strip_scheme(req["token"])
    _, _, pairs = split_token(token)
    amz_date = single(pairs, "X-Amz-Date")
    amz_expires = single(pairs, "X-Amz-Expires")
    try:
        frozen = datetime.datetime.strptime(amz_date, SIGV4_TIMESTAMP)
    except ValueError:
        emit(False, ["query parameter X-Amz-Date is not a SigV4 timestamp"])
    if frozen.strftime(SIGV4_TIMESTAMP) != amz_date:
        emit(False, ["query parameter X-Amz-Date is not a canonical SigV4 timestamp"])
    if not amz_expires.isdigit():
        emit(False, ["query parameter X-Amz-Expires is not a whole number of seconds"])

    # botocore's SigV4 signers (SigV4QueryAuth included) read the time through
    # botocore.auth.get_current_datetime (imported from botocore.compat). If a
    # future botocore stops doing so, say so instead of silently mis-verifying.
    if not callable(getattr(botocore.auth, "get_current_datetime", None)):
        fail(f"botocore {botocore.__version__} has no botocore.auth.get_current_datetime to freeze")

    session = boto3.session.Session(
        aws_access_key_id=req["access_key_id"],
        aws_secret_access_key=req["secret_access_key"],
        aws_session_token=req.get("session_token"),
        region_name=req["region"],
    )
    client = session.client("dsql", region_name=req["region"])
    generate = (
        client.generate_db_connect_admin_auth_token
        if req["admin"]
        else client.generate_db_connect_auth_token
    )

    def frozen_now(remove_tzinfo=True):
        if remove_tzinfo:
            return frozen
        return frozen.replace(tzinfo=datetime.timezone.utc)

    with mock.patch.object(botocore.auth, "get_current_datetime", frozen_now):
        expected = generate(
            Hostname=req["hostname"], Region=req["region"], ExpiresIn=int(amz_expires)
        )
    expected = strip_scheme(expected)

    # Guard against the clock patch silently not applying.
    _, _, e_pairs = split_token(expected)
    if single(e_pairs, "X-Amz-Date") != amz_date:
        fail("botocore ignored the frozen clock; the verifier needs updating for this botocore")

    if token == expected:
        emit(True)
    if same_up_to_parameter_order(token, expected):
        # botocore puts X-Amz-Security-Token before X-Amz-Signature, the AWS SDK
        # for Rust (aws-sigv4) after it. SigV4 signs the sorted canonical query,
        # so the order carries no meaning; every parameter must still be
        # byte-for-byte the same, encoding included.
        emit(True)
    emit(False, describe_difference(token, expected))


if __name__ == "__main__":
    main()
