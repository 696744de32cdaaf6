#!/usr/bin/env python3
"""Module import graph of crates/kube-fake-apiserver and its cycles.

Parses every path that reaches another module of the crate in src/**/*.rs: `crate::x`,
`super::x` (resolved against the file's place: `super` in src/store.rs is the crate root,
in src/handler/read.rs it is `handler`), `self::`, use-trees (`use crate::{a, b::{c}}`) and,
in lib.rs, bare `x::` paths to the modules it declares. Comments, doc comments and string
literals are ignored (an intra-doc link is not a dependency). Directories count as one module
(`handler/*` is `handler`, `admission/*` is `admission`, `cel_cost/*` is `cel_cost`); items
defined in lib.rs itself (`crate::Shared`, `super::RecordedRequest`) are the module `lib`.
Code in `#[cfg(test)]` blocks counts like any other code.

Prints the line count of each file, the module graph (who uses whom), the uses that go against
the layer order of LAYERS below (the README's "Layers" section), and the strongly connected
components with more than one member; exits 1 if there is any such use or cycle.

    python3 scripts/module-cycles.py [--crate crates/kube-fake-apiserver] [--quiet] [--ignore-root-items]
    python3 scripts/module-cycles.py --crate . --cycles-only   # the operator: cycles only, no layer list
"""

import argparse
import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# The layers of the crate, bottom to top, as its README's "Layers" section describes them. A module
# may use modules of lower layers and those listed before it in its own layer, nothing else.
LAYERS = [
    ("foundations", ["errors", "meta", "selectors", "jsonpath", "hold", "outage", "auth"]),
    (
        "resource definitions and field schemas",
        ["resources", "field_schema", "fields", "patch", "schema", "cel_cost", "builtin", "uid"],
    ),
    ("requests", ["request"]),
    ("store", ["store", "shared"]),
    ("admission and authorization", ["admission", "authz"]),
    ("HTTP handlers", ["discovery", "table", "access_review", "token_request", "watch", "handler"]),
    ("server", ["lib"]),
]
KEYWORDS = {"crate", "super", "self", "Self"}


def strip_comments_and_strings(src: str) -> str:
    """The source with comments and the contents of string/char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * src.count("\n", i, j))
            i = j
            continue
        m = re.match(r'b?r(#*)"', src[i:i + 80])
        if m and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            # a char literal ('a', '\n', '\u{1F600}') rather than a lifetime ('a)
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def split_top(s: str):
    """Split a use-tree list on commas that are not inside braces."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def first_segments_of_tree(tree: str):
    """`{a, b::c, d::{e}}` or `a::b` -> the first segments ['a', 'b', 'd'] / ['a']."""
    tree = tree.strip()
    if tree.startswith("{") and tree.endswith("}"):
        segs = []
        for part in split_top(tree[1:-1]):
            segs.extend(first_segments_of_tree(part))
        return segs
    m = re.match(IDENT, tree)
    return [m.group(0)] if m else []


class File:
    def __init__(self, root, path):
        self.path = path
        rel = os.path.relpath(path, root)
        parts = rel[:-3].split(os.sep)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts == ["lib"]:
            parts = []
        self.modpath = parts  # [] for lib.rs, ['handler', 'read'] for handler/read.rs
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.lines = self.text.count("\n")

    @property
    def node(self):
        return self.modpath[0] if self.modpath else "lib"


def inline_module_paths(code: str, base):
    """For each offset: the module path there, counting inline `mod x { ... }` blocks."""
    # returns a function offset -> module path
    events = []  # (start, end, name)
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
            j += 1
        events.append((m.end(), j, m.group(1)))

    def at(off):
        path = list(base)
        for s, e, name in sorted(events):
            if s <= off < e:
                path.append(name)
        return path

    return at


def resolve(prefix: str, here):
    """`crate::` / `super::super::` / `self::` relative to module path `here` -> absolute path."""
    segs = [s for s in prefix.split("::") if s]
    if segs and segs[0] == "crate":
        return []
    path = list(here)
    for s in segs:
        if s == "self":
            continue
        if s == "super":
            path = path[:-1]
    return path


def analyse(crate_dir):
    src = os.path.join(crate_dir, "src")
    files = []
    for d, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                files.append(File(src, os.path.join(d, name)))
    files.sort(key=lambda f: f.path)
    top = {f.modpath[0] for f in files if f.modpath}

    edges = defaultdict(lambda: defaultdict(set))  # from -> to -> {file:line}
    path_re = re.compile(
        r"(?<![A-Za-z0-9_:])((?:crate|self|super)(?:::(?:super|self))*)::\s*(\{[^;]*?\}|" + IDENT + ")",
        re.S,
    )
    for f in files:
        code = strip_comments_and_strings(f.text)
        where = inline_module_paths(code, f.modpath)

        def add(target_abs, off):
            to = target_abs[0] if target_abs else "lib"
            if to != "lib" and to not in top:
                return
            line = code.count("\n", 0, off) + 1
            if to != f.node:
                edges[f.node][to].add(f"{os.path.relpath(f.path, src)}:{line}")

        for m in path_re.finditer(code):
            here = where(m.start())
            base = resolve(m.group(1), here)
            for seg in first_segments_of_tree(m.group(2)):
                if seg in KEYWORDS:
                    continue  # `use crate::{self}` or `super::{self, x}`: the parent itself
                if base:
                    target = base + [seg]
                else:
                    # at the root, a name that is not a module is an item of lib.rs
                    target = [seg] if seg in top else []
                add(target, m.start())
        if not f.modpath:
            # lib.rs: bare paths to its own modules (`use errors::X`, `store::State::new()`)
            for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r")::", code):
                if m.group(1) in top:
                    add([m.group(1)], m.start())
    return files, top, edges


def site_key(site):
    path, line = site.rsplit(":", 1)
    return (path, int(line))


def sccs(nodes, edges):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--crate", default=os.path.join(here, "..", "crates", "kube-fake-apiserver"))
    ap.add_argument("--quiet", action="store_true", help="only the cycles")
    ap.add_argument(
        "--ignore-root-items",
        action="store_true",
        help="do not count uses of items defined in lib.rs (crate::Shared, ...) as edges to `lib`",
    )
    ap.add_argument(
        "--cycles-only",
        action="store_true",
        help="check only for cycles (the layer list describes the fake API server's crate)",
    )
    args = ap.parse_args()

    files, top, edges = analyse(args.crate)
    if args.ignore_root_items:
        for v in edges:
            edges[v].pop("lib", None)
    nodes = set(top) | {"lib"}
    src = os.path.join(args.crate, "src")

    if not args.quiet:
        print("== lines per file")
        by_node = defaultdict(int)
        for f in files:
            by_node[f.node] += f.lines
            print(f"{f.lines:6} {os.path.relpath(f.path, src)}")
        print(f"{sum(f.lines for f in files):6} total")
        print()
        print("== module graph (module [lines]: modules it uses)")
        for v in sorted(nodes):
            uses = ", ".join(sorted(edges.get(v, {})))
            print(f"{v} [{by_node[v]}]: {uses or '-'}")
        print()

    layers = [] if args.cycles_only else LAYERS
    rank = {m: i for i, m in enumerate(m for _, ms in layers for m in ms)}
    layer_of = {m: name for name, ms in layers for m in ms}
    unplaced = [] if args.cycles_only else sorted(nodes - set(rank))
    upward = []
    for v in sorted(nodes & set(rank)):
        for w in sorted(edges.get(v, {})):
            if w in rank and rank[w] >= rank[v]:
                upward.append((v, w))
    if not args.quiet and layers:
        print("== layers, bottom to top (a module uses only modules listed before it)")
        for i, (name, ms) in enumerate(layers, 1):
            print(f"{i}. {name}: {', '.join(ms)}")
        print()
    print(f"== uses against the layer order: {len(upward) + len(unplaced)}")
    for m in unplaced:
        print(f"    {m}: in no layer (add it to LAYERS and to the README)")
    for v, w in upward:
        sites = sorted(edges[v][w], key=site_key)
        print(f"    {v} ({layer_of[v]}) -> {w} ({layer_of[w]})  ({', '.join(sites)})")
    if not args.quiet:
        print()

    cycles = [c for c in sccs(nodes, edges) if len(c) > 1]
    print(f"== cycles (strongly connected components with more than one module): {len(cycles)}")
    for c in sorted(cycles, key=len):
        members = set(c)
        print(f"{len(c)} modules: {', '.join(c)}")
        for v in c:
            for w in sorted(edges.get(v, {})):
                if w in members:
                    sites = sorted(edges[v][w], key=site_key)
                    print(f"    {v} -> {w}  ({', '.join(sites)})")
    return 1 if cycles or upward or unplaced else 0


if __name__ == "__main__":
    sys.exit(main())
