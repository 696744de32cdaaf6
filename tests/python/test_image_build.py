"""The container image's build stage, replayed without Docker (tests/python/image_replay.py): the
build context .dockerignore lets in, then the Dockerfile's COPY and RUN steps in order, with this
machine's toolchain standing in for the rust: image and `cargo build --release` replayed as
`cargo check --release` (what the replay does differently is in image_replay's doc).

A cold run checks the workspace's dependencies in the release profile once (minutes on two cores);
DSQL_OPERATOR_IMAGE_REPLAY_TARGET_DIR names a target directory to keep between runs instead of a
fresh one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import image_replay
from conftest import REPO
from image_replay import DockerIgnore, ReplayError, read_dockerignore

BINARY = "dsql-credential-operator"
MANIFESTS = {"Cargo.toml", "Cargo.lock"}


# ---------------------------------------------------------------------------------------------
# .dockerignore semantics (the replay's context is only as right as these)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("patterns, path, excluded", [
    (["*"], "Cargo.toml", True),
    (["*"], "src/main.rs", True),  # through its parent src
    (["*", "!src"], "src/check/mod.rs", False),  # an exception lets in a directory's contents
    (["*", "!src", "src/ops"], "src/ops/http.rs", True),  # the last matching pattern decides
    (["*", "!src", "src/ops"], "src/main.rs", False),
    (["!src", "*"], "src/main.rs", True),  # order matters
    (["*", "!deploy/kubernetes-permissions.yaml"], "deploy/kubernetes-permissions.yaml", False),
    (["*", "!deploy/kubernetes-permissions.yaml"], "deploy/iam/operator-policy.json", True),
    (["*.md"], "README.md", True),
    (["*.md"], "docs/behaviour.md", False),  # * stays within one path element
    (["**/*.md"], "docs/behaviour.md", True),
    (["**/*.md"], "README.md", True),  # ** matches no element too
    (["**/target"], "crates/x/target/debug/a", True),
    (["docs/**"], "docs/a/b.md", True),
    (["doc?"], "docs", True),
    (["doc?"], "doc", False),
    (["[a-c]*.toml"], "Cargo.toml", False),  # case-sensitive
    (["[A-C]*.toml"], "Cargo.toml", True),
    (["/Cargo.lock"], "Cargo.lock", True),  # a leading / is the context's root
    (["./src/../Cargo.lock"], "Cargo.lock", True),  # cleaned like Go's filepath.Clean
    (["src/"], "src/lib.rs", True),
    (["Cargo\\.toml"], "Cargo.toml", True),  # an escaped character matches itself
    (["Cargo.toml"], "Cargo_toml", False),  # . is not a regex wildcard
])
def test_dockerignore_semantics(patterns, path, excluded):
    assert DockerIgnore(read_dockerignore("\n".join(patterns))).excluded(path) is excluded


def test_dockerignore_file_syntax():
    text = "\ufeff# comment\n  *  \n\n ! src \n!/deploy/x.yaml\n#!Cargo.toml\n"
    assert read_dockerignore(text) == ["*", "!src", "!deploy/x.yaml"]


def test_excluded_directories_are_walked_only_for_their_exceptions(tmp_path):
    for path in ("a/keep.txt", "a/drop.txt", "b/deep/keep.txt", "c/x.txt", "Cargo.toml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    (tmp_path / ".dockerignore").write_text("*\n!a/keep.txt\n!b\nb/deep/drop*\n!Cargo.toml\n")
    assert image_replay.assemble_context(tmp_path, tmp_path.parent / "ctx") == [
        "Cargo.toml", "a/keep.txt", "b/deep/keep.txt"]


# ---------------------------------------------------------------------------------------------
# The build stage, replayed
# ---------------------------------------------------------------------------------------------

def test_rust_version_is_this_toolchains():
    """The replay stands this machine's rustc in for the rust: image; they must be one release."""
    global_args, stages = image_replay.parse(REPO / "Dockerfile")
    build = next(s for s in stages if s.name == "build")
    match = re.fullmatch(r"rust:(\d+\.\d+)-[a-z]+", build.base)
    assert match, f"the build stage's base {build.base} is not rust:MAJOR.MINOR-DEBIAN"
    here = image_replay.rustc_version()
    assert match.group(1) == here, (
        f"the Dockerfile builds with Rust {match.group(1)} (ARG RUST_VERSION) but this machine's rustc is "
        f"{here}: the replay would not test what docker builds; move both to one release")


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("image-replay")
    kept = os.environ.get("DSQL_OPERATOR_IMAGE_REPLAY_TARGET_DIR")
    target = Path(kept) if kept else scratch / "target"
    try:
        yield image_replay.replay_build_stage(REPO, scratch, target_dir=target, mode="check")
    finally:
        if not kept:
            shutil.rmtree(target, ignore_errors=True)  # half a gigabyte; pytest keeps old tmp dirs


def test_build_stage_replays_with_only_the_context(replay):
    """Every step succeeds with the context .dockerignore lets in, and the context holds nothing
    that no COPY uses."""
    assert len(replay.cargo_steps) == 2, [s.command for s in replay.cargo_steps]
    context = set(replay.context)
    assert context == set(replay.copied), (
        f"sent to the builder but never copied: {sorted(context - set(replay.copied))}")


def test_dependencies_are_built_before_the_sources_arrive(replay):
    """The dependency layer sees manifests only, so a source change keeps it cached, and the
    operator's step compiles the operator and nothing else."""
    deps_step, operator_step = replay.cargo_steps
    before = {Path(f).name for f in deps_step.copied_before}
    assert before <= MANIFESTS, f"the dependency layer copies more than manifests: {deps_step.copied_before}"

    def registry(step):
        return {a["package_id"] for a in step.artifacts if not a["package_id"].startswith("path+")}

    assert registry(deps_step), "the dependency layer compiles no dependency"
    assert registry(operator_step) <= registry(deps_step), (
        f"dependencies first compiled with the sources: {sorted(registry(operator_step) - registry(deps_step))}")
    rebuilt = sorted(a["package_id"] for a in operator_step.artifacts
                     if not a["package_id"].startswith("path+") and not a["fresh"])
    assert not rebuilt, f"the operator's step rebuilds dependencies the layer before built: {rebuilt}"
    ours = [a for a in operator_step.artifacts if a["target"]["name"] == BINARY and a["target"]["kind"] == ["bin"]]
    assert ours and not ours[0]["fresh"], "the operator's step did not compile the real sources (stub kept?)"
    assert ours[0]["profile"]["opt_level"] == "s", "the binary is not built with [profile.release]"


def test_the_context_holds_every_target_the_image_compiles(replay):
    """A build script (build.rs is picked up without a manifest line) or a target moved out of src/
    that the context leaves out would be dropped or fail in docker build; cargo says which targets
    the image's `cargo build` compiles."""
    result = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version=1", "--locked"], cwd=REPO,
                            capture_output=True, text=True, check=True, timeout=120)
    metadata = json.loads(result.stdout)
    (package,) = [p for p in metadata["packages"] if Path(p["manifest_path"]).parent == REPO]
    compiled = [t for t in package["targets"] if set(t["kind"]) & {"lib", "bin", "custom-build"}]
    assert {t["name"] for t in compiled} >= {BINARY}, compiled
    missing = [t["src_path"] for t in compiled
               if str(Path(t["src_path"]).relative_to(REPO)) not in replay.copied]
    assert not missing, f"targets the image compiles but the build stage never copies: {missing}"


def test_runtime_stage_takes_the_binary_the_build_stage_installs(replay):
    _, stages = image_replay.parse(REPO / "Dockerfile")
    runtime = stages[-1]
    copies = [c for c in runtime.commands if c.cmd == "COPY"]
    assert [c.flags for c in copies] == [("--from=build",)], "the runtime stage takes one file, from build"
    source, dest = copies[0].value
    assert replay.produced.get(source) == BINARY, f"{source} is not what the build stage installs: {replay.produced}"
    (entrypoint,) = [c for c in runtime.commands if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == (dest,)
    (user,) = [c for c in runtime.commands if c.cmd == "USER"]
    assert user.value == ("65532:65532",), "the chart runs the image as 65532:65532"


# ---------------------------------------------------------------------------------------------
# The replay fails where docker build would (cheap: manifest resolution only)
# ---------------------------------------------------------------------------------------------

def _copy_of_repo(destination: Path) -> Path:
    skip = {"target", ".venv", ".git", "__pycache__"}
    shutil.copytree(REPO, destination, ignore=lambda _dir, names: [n for n in names if n in skip])
    return destination


def _resolve(repo: Path, scratch: Path) -> image_replay.Replay:
    return image_replay.replay_build_stage(repo, scratch, target_dir=scratch / "target", mode="resolve")


def test_resolve_replay_of_this_tree_passes(tmp_path):
    _resolve(REPO, tmp_path)


def test_a_declared_target_the_context_lacks_fails(tmp_path):
    """A new [[example]] whose file exists in the repository but not in the context: cargo reads
    every declared target before it builds, so docker build would fail at the first RUN."""
    repo = _copy_of_repo(tmp_path / "repo")
    with (repo / "Cargo.toml").open("a") as manifest:
        manifest.write('\n[[example]]\nname = "tour"\n')
    (repo / "examples").mkdir()
    (repo / "examples" / "tour.rs").write_text("fn main() {}\n")
    with pytest.raises(ReplayError, match=r"can't find `tour` example"):
        _resolve(repo, tmp_path / "scratch")


def test_a_copied_file_the_dockerignore_leaves_out_fails(tmp_path):
    repo = _copy_of_repo(tmp_path / "repo")
    ignore = repo / ".dockerignore"
    ignore.write_text(ignore.read_text().replace("!deploy/kubernetes-permissions.yaml\n", ""))
    with pytest.raises(ReplayError, match=r"deploy/kubernetes-permissions.yaml.* is not in the build context"):
        _resolve(repo, tmp_path / "scratch")
