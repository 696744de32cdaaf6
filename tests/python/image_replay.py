"""Replays the Dockerfile's build stage without Docker: the build context that .dockerignore lets
in, then the stage's COPY and RUN steps in order in a scratch directory, with this machine's Rust
toolchain standing in for the rust: image.

What differs from `docker build`, on purpose:
- `cargo build ...` in a RUN runs as `cargo check ...` (the same manifests, lock file, profile and
  sources, resolved and type-checked, without code generation and fat LTO: minutes instead of
  tens of minutes), with --message-format=json so each step's compiled units can be checked.
  In "resolve" mode it runs as `cargo fetch --locked` only: every manifest and the targets it
  declares are read and the lock file resolved, nothing is compiled (`cargo metadata` would not
  notice a declared target whose file is missing).
- A check produces no binary, so `install SRC DST` is not run: the replay checks instead that
  SRC is target/release/NAME for a bin target NAME that the preceding `cargo build --release`
  compiles, and records DST as produced; a later command that runs DST (`DST --version`) is
  skipped (tests/python/test_image_runtime.py runs the binary as the image does).
- Any other command of a RUN runs with sh in the scratch WORKDIR; one naming an absolute path
  (outside the scratch tree) is refused rather than run on this machine.
Anything the replay does not know (another instruction, COPY flag or RUN form) fails loudly, so a
Dockerfile change cannot slip past it unreplayed.

.dockerignore follows BuildKit's semantics (moby/patternmatcher, as the Docker documentation
describes them): lines starting with # are comments; each pattern is trimmed and cleaned like
Go's filepath.Clean, a leading / dropped; `*` and `?` match within one path element, `**` any
number of elements, `[...]` a character class, `\\` escapes; a path is excluded when the last
pattern that matches it or one of its parent directories is not a `!` exception.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile  # the Dockerfile parser of BuildKit itself (PyPI `dockerfile`)


class ReplayError(AssertionError):
    """The build would fail (or the replay cannot say what it would do)."""


# ---------------------------------------------------------------------------------------------
# .dockerignore
# ---------------------------------------------------------------------------------------------

def go_clean(path: str) -> str:
    """Go's filepath.Clean for slash-separated paths."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_dockerignore(text: str) -> list[str]:
    """The patterns of a .dockerignore file, as BuildKit reads them (ignorefile.ReadAll)."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


_REGEX_ESCAPED = set(".+()|{}$")
_WILDCARDS = set("*?[\\")


@dataclass
class Pattern:
    text: str
    exclusion: bool
    kind: str = "exact"  # exact, prefix, suffix or regex
    regex: re.Pattern | None = None

    @classmethod
    def compile(cls, raw: str) -> "Pattern":
        raw = go_clean(raw.strip())
        exclusion = raw.startswith("!")
        if exclusion:
            if raw == "!":
                raise ValueError('illegal exclusion pattern: "!"')
            raw = raw[1:]
        pattern = cls(raw, exclusion)
        # moby/patternmatcher's compile: one regular expression, or a cheaper exact, prefix
        # (`dir/**`) or suffix (`**/name`) comparison when the pattern allows it.
        body, kind, pos, step = "", "exact", 0, 0
        while pos < len(raw):
            ch = raw[pos]
            pos += 1
            if ch == "*" and raw[pos:pos + 1] == "*":
                pos += 1
                if raw[pos:pos + 1] == "/":
                    pos += 1
                if pos >= len(raw):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        body += ".*"
                        kind = "regex"
                else:
                    body += "(.*/)?"
                    kind = "regex"
                if step == 0:
                    kind = "suffix"
            elif ch == "*":
                body += "[^/]*"
                kind = "regex"
            elif ch == "?":
                body += "[^/]"
                kind = "regex"
            elif ch in _REGEX_ESCAPED:
                body += "\\" + ch
            elif ch == "\\":
                if pos < len(raw):
                    body += re.escape(raw[pos])
                    pos += 1
                    kind = "regex"
                else:
                    body += "\\\\"
            elif ch in "[]":
                body += ch
                kind = "regex"
            else:
                body += ch
            step += 1
        pattern.kind = kind
        if kind == "regex":
            try:
                pattern.regex = re.compile(body)
            except re.error as e:
                raise ValueError(f"bad .dockerignore pattern {raw!r}: {e}") from e
        return pattern

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


class DockerIgnore:
    def __init__(self, patterns: list[str]):
        self.patterns = [Pattern.compile(p) for p in patterns if p.strip()]

    @classmethod
    def of(cls, root: Path) -> "DockerIgnore":
        path = root / ".dockerignore"
        return cls(read_dockerignore(path.read_text()) if path.exists() else [])

    def excluded(self, path: str) -> bool:
        """MatchesOrParentMatches: the last pattern matching the path or a parent decides."""
        path = go_clean(path)
        if path == ".":
            return False
        parents = posixpath.dirname(path).split("/") if "/" in path else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def _may_skip(self, directory: str) -> bool:
        """An excluded directory is not walked when no exception can let in anything below it
        (BuildKit walks it when an exception has a wildcard)."""
        exceptions = [p for p in self.patterns if p.exclusion]
        if not exceptions:
            return True
        if any(_WILDCARDS & set(p.text) for p in exceptions):
            return False
        return not any((p.text + "/").startswith(directory + "/") for p in exceptions)

    def context(self, root: Path) -> list[str]:
        """Relative paths (files, symlinks, and directories not excluded) of the build context."""
        found: list[str] = []
        for current, dirs, files in os.walk(root):
            rel_dir = os.path.relpath(current, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            kept = []
            for name in sorted(dirs):
                rel = posixpath.join(rel_dir, name) if rel_dir else name
                full = Path(current) / name
                if full.is_symlink():
                    if not self.excluded(rel):
                        found.append(rel)
                    continue
                if self.excluded(rel):
                    if self._may_skip(rel):
                        continue
                else:
                    found.append(rel)
                kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                rel = posixpath.join(rel_dir, name) if rel_dir else name
                if not self.excluded(rel):
                    found.append(rel)
        return sorted(found)


def assemble_context(repo: Path, destination: Path) -> list[str]:
    """Copies what `docker build repo` would send into destination; returns the files."""
    ignore = DockerIgnore.of(repo)
    files = []
    for rel in ignore.context(repo):
        source, target = repo / rel, destination / rel
        if source.is_dir() and not source.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        files.append(rel)
    return files


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str | None
    base: str
    commands: list  # dockerfile.Command


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise ReplayError(f"${name} in {text!r} is not a declared ARG/ENV")
        return variables[name]

    if "${" in text and re.search(r"\$\{[^}]*[:?+-]", text):
        raise ReplayError(f"the replay does not expand variable forms like {text!r}")
    return _VAR.sub(value, text)


def _key_value(raw: str) -> tuple[str, str | None]:
    name, sep, default = raw.partition("=")
    return name, (default if sep else None)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (with defaults) and the stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            value = list(command.value)
            name = None
            if len(value) == 3 and value[1].upper() == "AS":
                name = value[2]
            elif len(value) != 1:
                raise ReplayError(f"unexpected FROM: {command.original}")
            if command.flags:
                raise ReplayError(f"the replay does not know FROM flags: {command.original}")
            stages.append(Stage(name, expand(value[0], global_args), []))
        elif not stages:
            if command.cmd != "ARG":
                raise ReplayError(f"only ARG may precede the first FROM: {command.original}")
            for raw in command.value:
                name, default = _key_value(raw)
                global_args[name] = default or ""
        else:
            stages[-1].commands.append(command)
    return global_args, stages


# ---------------------------------------------------------------------------------------------
# Replaying the build stage
# ---------------------------------------------------------------------------------------------

@dataclass
class CargoStep:
    line: int
    command: str
    artifacts: list[dict]
    copied_before: list[str]  # context files copied by the COPYs before this step
    release: bool
    mode: str


@dataclass
class Replay:
    workdir: Path
    cargo_steps: list[CargoStep] = field(default_factory=list)
    produced: dict[str, str] = field(default_factory=dict)  # image path -> bin target
    skipped: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)  # context files the COPYs took
    context: list[str] = field(default_factory=list)  # the files of the build context


def split_and_list(command: str) -> list[str]:
    """The commands of `a && b && c`, split outside quotes; any other list operator is refused."""
    parts, current, quote, i = [], "", None, 0
    while i < len(command):
        ch = command[i]
        if quote:
            current += ch
            if ch == "\\" and quote == '"' and i + 1 < len(command):
                current += command[i + 1]
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current += ch
        elif ch == "\\" and i + 1 < len(command):
            current += command[i: i + 2]
            i += 1
        elif command.startswith("&&", i):
            parts.append(current.strip())
            current = ""
            i += 1
        elif ch in ";|&`" or command.startswith("$(", i):
            raise ReplayError(f"the replay runs `a && b` chains only, not {ch!r} in: {command}")
        else:
            current += ch
        i += 1
    if quote:
        raise ReplayError(f"unbalanced quote in: {command}")
    parts.append(current.strip())
    return [p for p in parts if p]


def cargo_env(target_dir: Path) -> dict[str, str]:
    """The toolchain's environment and nothing of this shell's cargo settings (the image has none)."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "LANG", "TMPDIR",
                    "SSL_CERT_FILE", "SSL_CERT_DIR")}
    env["CARGO_TARGET_DIR"] = str(target_dir)
    env["CARGO_TERM_COLOR"] = "never"
    return env


def rustc_version() -> str:
    out = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"rustc (\d+)\.(\d+)\.", out)
    assert match, out
    return f"{match.group(1)}.{match.group(2)}"


def replay_build_stage(repo: Path, scratch: Path, *, target_dir: Path, mode: str = "check",
                       stage_name: str = "build", timeout: float = 3600) -> Replay:
    """Assembles the context of `repo` in scratch/context and replays the stage `stage_name`
    of repo/Dockerfile in scratch/rootfs. mode: "check" or "resolve" (see the module doc)."""
    assert mode in ("check", "resolve")
    global_args, stages = parse(repo / "Dockerfile")
    (stage,) = [s for s in stages if s.name == stage_name]
    context = scratch / "context"
    context.mkdir(parents=True)
    context_files = assemble_context(repo, context)
    rootfs = scratch / "rootfs"
    rootfs.mkdir()
    replay = Replay(workdir=rootfs)
    variables = dict(global_args)
    stage_args: dict[str, str] = {}  # ARGs declared in the stage: RUN sees them as variables
    env_vars: dict[str, str] = {}
    copied: list[str] = []
    last_cargo: CargoStep | None = None

    def in_rootfs(path: str, relative_to: Path) -> Path:
        if path.startswith("/"):
            return rootfs / path.lstrip("/")
        return relative_to / path

    for command in stage.commands:
        where = f"Dockerfile:{command.start_line} {command.original[:60]}"
        if command.cmd == "ARG":
            for raw in command.value:
                name, default = _key_value(raw)
                variables[name] = global_args.get(name, "") if default is None else default
                stage_args[name] = variables[name]
        elif command.cmd == "ENV":
            values = list(command.value)
            for name, value in zip(values[::2], values[1::2]):
                env_vars[name] = expand(value, {**variables, **env_vars})
        elif command.cmd == "WORKDIR":
            (path,) = command.value
            replay.workdir = in_rootfs(expand(path, variables), replay.workdir)
            replay.workdir.mkdir(parents=True, exist_ok=True)
        elif command.cmd == "COPY":
            if command.flags:
                raise ReplayError(f"{where}: the replay does not know COPY flags {command.flags}")
            *sources, dest = [expand(v, variables) for v in command.value]
            copied += _copy(context, sources, dest, replay.workdir, in_rootfs, where)
        elif command.cmd == "RUN":
            if command.json or command.flags or command.heredocs:
                raise ReplayError(f"{where}: the replay runs shell-form RUN without flags only")
            for segment in split_and_list(command.value[0]):
                argv = shlex.split(segment)
                if argv[:2] == ["cargo", "build"]:
                    last_cargo = _cargo(argv, command.start_line, copied, replay, target_dir, mode,
                                        {**cargo_env(target_dir), **stage_args, **env_vars}, timeout)
                elif argv[0] == "install":
                    _install(argv, last_cargo, replay, where)
                elif argv[0] in replay.produced:
                    replay.skipped.append(segment)
                else:
                    absolute = [a for a in argv if a.startswith("/")]
                    if absolute:
                        raise ReplayError(f"{where}: the replay will not run {segment!r} (absolute paths "
                                          f"{absolute} would be this machine's, not the image's)")
                    result = subprocess.run(["sh", "-c", segment], cwd=replay.workdir,
                                            env={**cargo_env(target_dir), **stage_args, **env_vars},
                                            capture_output=True, text=True)
                    if result.returncode != 0:
                        raise ReplayError(f"{where}: `{segment}` failed:\n{result.stdout}{result.stderr}")
        elif command.cmd in ("LABEL", "EXPOSE", "USER", "ENTRYPOINT", "CMD"):
            pass
        else:
            raise ReplayError(f"{where}: the replay does not know {command.cmd}")
    if "CARGO_TARGET_DIR" in env_vars:
        raise ReplayError("the stage sets CARGO_TARGET_DIR: the replay checks target/ paths as cargo's default")
    if any(f.startswith(".cargo/") for f in context_files):
        raise ReplayError("the context has a .cargo/ configuration: the replay does not apply it")
    replay.copied = copied
    replay.context = context_files
    return replay


def _copy(context: Path, sources: list[str], dest: str, workdir: Path, in_rootfs, where: str) -> list[str]:
    """COPY from the context; returns the context files copied."""
    matched: list[Path] = []
    for source in sources:
        clean = go_clean(source).lstrip("/")
        if clean.startswith(".."):
            raise ReplayError(f"{where}: {source} is outside the context")
        hits = sorted(context.glob(clean)) if any(c in clean for c in "*?[") else [context / clean]
        hits = [h for h in hits if h.exists() or h.is_symlink()]
        if not hits:
            raise ReplayError(f"{where}: COPY source {source!r} is not in the build context "
                              f"(.dockerignore leaves it out, or it does not exist)")
        matched += hits
    target = in_rootfs(dest, workdir)
    into_dir = dest.endswith("/") or len(matched) > 1 or (len(matched) == 1 and matched[0].is_dir())
    files = []
    for hit in matched:
        if hit.is_dir() and not hit.is_symlink():
            shutil.copytree(hit, target, symlinks=True, dirs_exist_ok=True)
            files += [str(p.relative_to(context)) for p in hit.rglob("*") if not p.is_dir()]
        else:
            final = target / hit.name if into_dir else target
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(hit, final, follow_symlinks=False)
            files.append(str(hit.relative_to(context)))
    return files


def _cargo(argv: list[str], line: int, copied: list[str], replay: Replay, target_dir: Path, mode: str,
           env: dict[str, str], timeout: float) -> CargoStep:
    release = "--release" in argv or "-r" in argv
    if mode == "check":
        run = ["cargo", "check", *argv[2:], "--message-format=json-render-diagnostics"]
    else:
        run = ["cargo", "fetch", *[a for a in argv[2:] if a in ("--locked", "--frozen", "--offline")]]
    result = subprocess.run(run, cwd=replay.workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ReplayError(f"Dockerfile:{line} `{' '.join(argv)}` (replayed as `{' '.join(run)}`) failed:\n"
                          f"{result.stderr[-6000:]}")
    artifacts = []
    if mode == "check":
        for text in result.stdout.splitlines():
            message = json.loads(text) if text.startswith("{") else {}
            if message.get("reason") == "compiler-artifact":
                artifacts.append(message)
    step = CargoStep(line, " ".join(argv), artifacts, list(copied), release, mode)
    replay.cargo_steps.append(step)
    return step


def _install(argv: list[str], last_cargo: CargoStep | None, replay: Replay, where: str) -> None:
    """`install [-D] [-m MODE] SRC DST`: SRC must be a binary the last cargo build produces."""
    operands, i = [], 1
    while i < len(argv):
        if argv[i] == "-m":
            i += 2
            continue
        if argv[i] in ("-D", "-s"):
            i += 1
            continue
        if argv[i].startswith("-"):
            raise ReplayError(f"{where}: the replay does not know install {argv[i]}")
        operands.append(argv[i])
        i += 1
    if len(operands) != 2:
        raise ReplayError(f"{where}: install with {len(operands)} operands")
    source, dest = operands
    if last_cargo is None:
        raise ReplayError(f"{where}: install before any cargo build")
    profile_dir = "release" if last_cargo.release else "debug"
    match = re.fullmatch(rf"target/{profile_dir}/([A-Za-z0-9_-]+)", go_clean(source))
    if not match:
        raise ReplayError(f"{where}: install {source}: not where `{last_cargo.command}` puts a binary "
                          f"(target/{profile_dir}/NAME)")
    name = match.group(1)
    if last_cargo.mode == "resolve":
        replay.produced[dest] = name
        return
    bins = {a["target"]["name"] for a in last_cargo.artifacts if a["target"]["kind"] == ["bin"]}
    if name not in bins:
        raise ReplayError(f"{where}: install {source}: `{last_cargo.command}` builds no bin target {name} "
                          f"(bins: {sorted(bins)})")
    replay.produced[dest] = name

