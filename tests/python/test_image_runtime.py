"""What the image's runtime stage promises, checked without an image: the binary runs as the chart
runs it (uid/gid 65532 with no supplementary groups, no capabilities, no_new_privs, an environment
holding only what it is given and no HOME, a read-only root filesystem) and writes nothing, and it
needs no shared library beyond glibc's and libgcc's (what distroless cc has).

The binary is the debug build the integration tests run (as `cargo test --workspace --locked
--all-targets`, which scripts/test.sh runs just before, builds it; the release profile is the
image's own concern, tests/python/test_image_build.py). The read-only view is a private mount namespace (unshare) in which every mount but /proc, /sys and
/dev is remounted read-only; setpriv drops to 65532. Both need root, which the test run has (CI
runs as root): without them the tests fail rather than skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO

BINARY = "dsql-credential-operator"
UID = GID = 65532
MARKER = "@@image-harness-report@@"
# Shared libraries of distroless cc-debian12 (glibc and libgcc_s).
IMAGE_LIBRARIES = {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
                   "libpthread.so.0", "libdl.so.2", "librt.so.1"}


def _require(tool: str) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} is required (util-linux) to run the binary as the image does"
    return found


@pytest.fixture(scope="module")
def binary():
    assert os.geteuid() == 0, "these tests drop to uid 65532 and mount a read-only view: run them as root"
    for tool in ("unshare", "setpriv", "mount", "env", "find"):
        _require(tool)
    # The binary the integration tests run (cargo builds the package's bins for them), built with
    # the features of scripts/test.sh's `cargo test --workspace --all-targets` just before pytest:
    # any one integration test selects them, so this builds nothing there. (`cargo build --bin`
    # would: without the dev-dependencies' features, tokio and everything above it compile a
    # second time, over ten CPU-minutes.) The smallest test that runs the binary is the one named.
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version=1", "--locked"], cwd=REPO,
        capture_output=True, text=True, check=True, timeout=120).stdout)
    (package,) = [p for p in metadata["packages"] if p["name"] == BINARY]
    runners = sorted((Path(t["src_path"]).stat().st_size, t["name"]) for t in package["targets"]
                     if t["kind"] == ["test"] and f"CARGO_BIN_EXE_{BINARY}" in Path(t["src_path"]).read_text())
    assert runners, "no integration test runs the binary"
    result = subprocess.run(
        ["cargo", "test", "--workspace", "--locked", "--no-run", "--test", runners[0][1],
         "--message-format=json-render-diagnostics"],
        cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-6000:]
    executables = [m["executable"] for m in map(json.loads, result.stdout.splitlines())
                   if m.get("reason") == "compiler-artifact" and m["target"]["name"] == BINARY
                   and m["target"]["kind"] == ["bin"] and not m["profile"]["test"]]
    assert executables, "cargo built no dsql-credential-operator binary"
    # As the image holds it: a root-owned 0755 file (install -m 0755), outside /tmp (which the
    # harness may cover) and the target directory (which may be anywhere).
    installed = Path(tempfile.mkdtemp(prefix="dsql-operator-image-bin-", dir="/var/tmp"))
    try:
        installed.chmod(0o755)
        shutil.copy2(executables[0], installed / BINARY)
        (installed / BINARY).chmod(0o755)
        yield installed / BINARY
    finally:
        shutil.rmtree(installed)


def _rw_mounts() -> list[str]:
    """Mount points to make read-only: every read-write one outside /proc, /sys and /dev (which a
    container keeps)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if re.match(r"^/(proc|sys|dev)(/|$)", point):
            continue
        if "rw" in fields[5].split(","):
            points.append(point)
    return points


@contextmanager
def given_files(files: dict[str, str]):
    """A directory (outside /tmp, which the harness may hide) with the files the binary is given,
    readable by 65532, and an empty `work` mount point for its working directory."""
    base = Path(tempfile.mkdtemp(prefix="dsql-operator-image-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        (base / "work").mkdir()
        for name, text in files.items():
            (base / name).write_text(text)
            (base / name).chmod(0o644)
        yield base
    finally:
        shutil.rmtree(base)


def run_as_image(command: list[str], base: Path, env: dict[str, str], *, writable_tmp: bool,
                 timeout: float = 120) -> tuple[int, str, str, list[str]]:
    """Runs command as the image does (see the module doc) with base/work as the working
    directory, a fresh tmpfs owned by 65532. writable_tmp: /tmp is a fresh writable tmpfs (to see
    whether anything is written there) instead of read-only (as in the pod). Returns exit code,
    stdout, stderr, and what was left in /tmp and the working directory."""
    work = base / "work"
    script = "\n".join([
        "set -eu",
        'for point in "$@"; do mount -o remount,bind,ro "$point"; done',
        'mount -t tmpfs -o mode=1777,size=16m tmpfs /tmp' if writable_tmp else ":",
        f'mount -t tmpfs -o mode=0700,uid={UID},gid={GID},size=16m tmpfs "$WORK"',
        'cd "$WORK"',
        "set +e",
        f'setpriv --reuid={UID} --regid={GID} --clear-groups --no-new-privs --inh-caps=-all '
        f'--bounding-set=-all env -i {" ".join(_shell_quote(f"{k}={v}") for k, v in env.items())} '
        f'{" ".join(_shell_quote(c) for c in command)} </dev/null',
        "code=$?",
        f'echo "{MARKER} $code"',
        'find "$WORK"' + (" /tmp" if writable_tmp else "") + " -mindepth 1",
    ])
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             *_rw_mounts()], env={"WORK": str(work), "PATH": os.environ["PATH"]},
                            capture_output=True, text=True, timeout=timeout)
    assert MARKER in result.stdout, f"the harness failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    output, report = result.stdout.split(MARKER, 1)
    code, *left = report.split()
    return int(code), output, result.stderr, left


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.mark.parametrize("writable_tmp", [False, True], ids=["tmp-read-only", "tmp-writable"])
def test_harness_runs_as_the_image_does(writable_tmp):
    """The harness itself: 65532 without groups, capabilities or HOME, and a read-only root."""
    probe = ("id -u; id -g; id -G; echo \"HOME=${HOME-unset}\"; "
             "grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status; "
             "touch /var/probe || echo refused; touch probe && rm probe && echo cwd-writable")
    with given_files({}) as base:
        code, out, err, left = run_as_image([_require("sh"), "-c", probe], base, {}, writable_tmp=writable_tmp)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == [str(UID), str(GID), str(GID), "HOME=unset"], out
    assert "NoNewPrivs:\t1" in lines and "CapEff:\t0000000000000000" in lines, out
    assert "CapBnd:\t0000000000000000" in lines, out
    assert "Read-only file system" in err and "refused" in lines, (out, err)
    assert "cwd-writable" in lines and left == []


def test_version_as_the_image_runs_it(binary):
    version = re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    for writable_tmp in (False, True):
        with given_files({}) as base:
            code, out, err, left = run_as_image([str(binary), "--version"], base, {}, writable_tmp=writable_tmp)
        assert (code, out, err) == (0, f"{BINARY} {version}\n", ""), (code, out, err)
        assert left == [], f"--version wrote {left}"


def test_needs_only_the_libraries_distroless_cc_has(binary):
    dynamic = subprocess.run(["readelf", "--dynamic", str(binary)], capture_output=True, text=True, check=True)
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic.stdout))
    assert needed, dynamic.stdout
    assert needed <= IMAGE_LIBRARIES, f"needs libraries distroless cc lacks: {sorted(needed - IMAGE_LIBRARIES)}"


# ---------------------------------------------------------------------------------------------
# `check` against a stand-in API server and moto, as the image runs it
# ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeKube:
    """The few API calls `check` makes (src/check/mod.rs): version, SelfSubjectReview, discovery of
    the CRD's group, the CRD itself, and SelfSubjectAccessReviews (all allowed)."""

    def __init__(self, crd: dict):
        self.crd = crd
        self.requests: list[tuple[str, str]] = []
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        version = crd["spec"]["versions"][0]["name"]
        names = crd["spec"]["names"]
        routes = {
            ("GET", "/version"): {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "0",
                                  "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                                  "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"},
            ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews"): {
                "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
                "status": {"userInfo": {"username": "system:serviceaccount:dsql-system:dsql-credential-operator"}}},
            ("GET", f"/apis/{group}/{version}"): {
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
                "resources": [{"name": plural, "singularName": names["singular"], "namespaced": True,
                               "kind": names["kind"], "verbs": ["get", "list", "watch", "patch"]}]},
            ("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"): crd,
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str):
                path = self.path.split("?")[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((method, path))
                if (method, path) in routes:
                    self._send(200, routes[(method, path)])
                elif (method, path) == ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"):
                    review = json.loads(body)
                    review["status"] = {"allowed": True}
                    self._send(201, review)
                else:
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404, "message": f"{path} not found"})

            def _send(self, status: int, document: dict):
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
users:
- name: operator
  user: {{token: not-a-real-token}}
contexts:
- name: fake
  context: {{cluster: fake, user: operator, namespace: dsql-system}}
current-context: fake
"""

ACCESS_POLICY = """rules:
  - name: shop
    namespaces: [shop]
    secretNames: ['{prefix}/{namespace}/*']
"""


def test_crd_and_check_as_the_image_runs_them(binary, moto_url):
    """`crd` prints the CRD and `check` passes every check (cluster, CRD current, RBAC, AWS region
    and credentials through STS, access policy) with only the files and variables it is given."""
    with given_files({}) as base:
        code, crd_yaml, err, left = run_as_image([str(binary), "crd"], base, {}, writable_tmp=True)
    assert code == 0 and left == [], (code, err, left)
    crd = yaml.safe_load(crd_yaml)
    assert crd["kind"] == "CustomResourceDefinition"

    env = {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "AKIDIMAGETEST",
           "AWS_SECRET_ACCESS_KEY": "image-test-secret", "AWS_EC2_METADATA_DISABLED": "true"}
    with FakeKube(crd) as kube:
        files = {"kubeconfig": KUBECONFIG.format(server=kube.url), "access-policy.yaml": ACCESS_POLICY}
        for writable_tmp in (False, True):
            with given_files(files) as base:
                command = [str(binary), "check", "--kubeconfig", str(base / "kubeconfig"),
                           "--region", "us-east-1", "--access-policy", str(base / "access-policy.yaml"),
                           "--namespace", "shop", "--leader-election-namespace", "dsql-system"]
                code, out, err, left = run_as_image(command, base, env, writable_tmp=writable_tmp)
            lines = out.splitlines()
            assert code == 0, f"check failed as the image runs it:\n{out}{err}"
            assert lines and all(line.startswith("✓") for line in lines), out
            for expected in ("reachable (Kubernetes v1.33.0)", "installed and current", "RBAC",
                             "AWS region us-east-1", "AWS credentials found", "access policy"):
                assert any(expected in line for line in lines), f"no {expected!r} line in:\n{out}"
            assert left == [], f"check wrote {left}"
        assert ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") in kube.requests
