#!/usr/bin/env python3
"""Lists the import edges between the modules of each crate and the cycles
among them (STYLE.md 13: modules import a name from the module that defines
it, and no module imports, directly or not, from one that imports it).

A module is one source file (`foo.rs`, or `foo/mod.rs` for `foo`); the crate
root is `lib`. An edge A -> B means A names something of B: a `use` of
`crate::…`, `super::…`, `self::…` or a child module, or such a path in code.
`mod b;` alone is not an edge (it declares, it imports nothing). Unit tests
(`#[cfg(test)] mod tests { … }`) are skipped: they are not structure.

Cycles are reported twice: between files, and between top-level modules
(each collapsed with its children). The root re-exporting modules' items
(`pub use store::Store`) is an edge lib -> store, so a module that imports
through the root (`use crate::Store`) closes a cycle with it.

    .ci/import-cycles.py [--edges] [--check] [crate dir ...]

With no crate dirs, every workspace member with a `src/lib.rs`. `--check`
exits 1 when any crate has a cycle.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        # Drop // comments (doc comments included) outside string literals,
        # roughly: good enough for `use` lines and paths.
        i = line.find("//")
        if i >= 0 and line[:i].count('"') % 2 == 0:
            line = line[:i]
        out.append(line)
    return "\n".join(out)


def strip_strings(text):
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def strip_unit_tests(text):
    # `#[cfg(test)]` followed by `mod name {`: drop the braced block.
    out, i = [], 0
    pattern = re.compile(
        r"#\[cfg\((?:all\()?test[^\]]*\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{"
    )
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]]."""
    tree = tree.strip()
    results = []

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            parts.append(cur)
        return parts

    def walk(prefix, s):
        s = s.strip()
        if not s:
            return
        brace = s.find("{")
        if brace >= 0 and s.endswith("}"):
            head = s[:brace].rstrip(":").strip()
            segs = [x for x in head.split("::") if x] if head else []
            for part in split_top(s[brace + 1 : -1]):
                walk(prefix + segs, part)
        else:
            s = re.sub(r"\s+as\s+" + IDENT + r"$", "", s)
            results.append(prefix + [x.strip() for x in s.split("::") if x.strip()])

    walk([], tree)
    return results


def module_files(src):
    """{module path tuple: file}, () being the crate root."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel == ["lib"]:
                key = ()
            elif rel[-1] == "mod":
                key = tuple(rel[:-1])
            else:
                key = tuple(rel)
            if rel[0] in ("bin",) or rel == ["main"]:
                continue
            mods[key] = path
    return mods


def resolve(mods, base, segs):
    """The module a path starting at module `base` lands in."""
    cur = list(base)
    for s in segs:
        if tuple(cur + [s]) in mods:
            cur.append(s)
        else:
            break
    return tuple(cur)


def edges_of(mods, mod, text):
    text = strip_strings(strip_unit_tests(strip_comments(text)))
    found = set()

    def add(path):
        if not path:
            return
        head, rest = path[0], path[1:]
        if head == "crate":
            target = resolve(mods, (), rest)
        elif head == "super":
            base = list(mod[:-1])
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
            target = resolve(mods, tuple(base), rest)
        elif head == "self":
            target = resolve(mods, mod, rest)
        elif tuple(list(mod) + [head]) in mods:
            target = resolve(mods, mod, path)
        else:
            return
        if target != mod and not (target == mod[: len(target)] and False):
            found.add(target)

    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for path in expand_use_tree(m.group(1)):
            add(path)
    for m in re.finditer(r"\b((?:crate|super|self)(?:::" + IDENT + r")+)", text):
        add(m.group(1).split("::"))
    found.discard(mod)
    return found


def name(mod):
    return "lib" if not mod else "::".join(mod)


def sccs(nodes, graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def cycle_in(comp, graph):
    """One concrete cycle through the first node of a component."""
    comp_set = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in comp_set and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def analyse(crate, show_edges):
    src = os.path.join(crate, "src")
    mods = module_files(src)
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as f:
            graph[mod] = edges_of(mods, mod, f.read())
    top = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            ta, tb = a[:1], b[:1]
            if ta != tb:
                top[ta].add(tb)
    file_cycles = sccs(graph.keys(), graph)
    top_cycles = sccs({m[:1] for m in mods}, top)
    print(f"## {crate}: {len(mods)} modules, {sum(len(v) for v in graph.values())} edges")
    if show_edges:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"  {name(a)} -> {name(b)}")
    for label, cycles, g in (("files", file_cycles, graph), ("top-level modules", top_cycles, top)):
        if not cycles:
            print(f"  no cycle between {label}")
        for comp in cycles:
            loop = cycle_in(comp, g)
            print(
                f"  cycle between {label} ({len(comp)} in the knot: {', '.join(name(c) for c in comp)})"
            )
            print(f"    e.g. {' -> '.join(name(c) for c in loop)}")
    return bool(file_cycles or top_cycles)


def main():
    args = sys.argv[1:]
    show_edges = "--edges" in args
    check = "--check" in args
    crates = [a for a in args if not a.startswith("--")]
    if not crates:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        with open(os.path.join(root, "Cargo.toml")) as f:
            members = re.search(r"members\s*=\s*\[(.*?)\]", f.read(), re.S).group(1)
        crates = [
            os.path.join(root, m)
            for m in re.findall(r'"([^"]+)"', members)
            if os.path.exists(os.path.join(root, m, "src", "lib.rs"))
        ]
    bad = False
    for crate in crates:
        bad |= analyse(os.path.normpath(crate), show_edges)
    if check and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
