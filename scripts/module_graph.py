#!/usr/bin/env python3
"""Prints the import cycles between tandem's modules (exit 1 if any) and, with
--long-functions N, every `fn` in src/ longer than N lines.

A module is a file under src/ (`src/a/mod.rs` and `src/a.rs` are module `a`). An edge a -> b is a
`crate::b...` or `super::...` path used in a (in a `use` or inline), taken to the longest prefix
that names a module; a file's `#[cfg(test)]` part is left out, since its `super::*` is the file. A child module importing its parent's items is a real edge; a parent declaring `mod child`
is not an import. Stdlib only, so anyone can run it: `python3 scripts/module_graph.py`.
"""

import argparse
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, SRC)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return "::".join(rel)


def strip_comments_and_strings(text):
    # Enough for our sources: line comments, block comments, plain and raw strings, char literals.
    pattern = re.compile(
        r'//[^\n]*|/\*.*?\*/|r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'',
        re.S,
    )
    return pattern.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def use_paths(text, parent):
    """Every `crate::a::b::...` path, with `use crate::{a, b::{c, d}}` groups expanded; a
    `super::` path is made absolute from `parent`, the module above the file."""
    paths = []
    prefix = parent + "::" if parent else ""
    for root, base in (("crate", ""), ("super", prefix)):
        for m in re.finditer(r"\buse\s+" + root + r"::(.*?);", text, re.S):
            paths.extend(base + p for p in expand(m.group(1).replace("\n", " ")))
        for m in re.finditer(r"(?<!use )(?<!::)\b" + root + r"((?:::\w+)+)", text):
            paths.append(base + m.group(1)[2:])
    return paths


def expand(tree, prefix=""):
    tree = tree.strip()
    if "{" not in tree:
        return [prefix + part.strip().split(" as ")[0] for part in split_top(tree)]
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    out = []
    for part in split_top(inner):
        out.extend(expand(part, prefix + head.strip()))
    return out


def split_top(text):
    depth, start, parts = 0, 0, []
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def resolve(path, modules):
    parts = [p for p in path.split("::") if p and p != "self"]
    for n in range(len(parts), 0, -1):
        name = "::".join(parts[:n])
        if name in modules:
            return name
    return None


def graph(files):
    modules = {module_of(f) for f in files}
    edges = {m: set() for m in modules}
    for f in files:
        here = module_of(f)
        with open(f, encoding="utf-8") as fh:
            text = strip_comments_and_strings(fh.read()).split("#[cfg(test)]")[0]
        for path in use_paths(text, here.rpartition("::")[0]):
            target = resolve(path, modules)
            # `crate::` alone (the root's re-exports) is not a module edge worth reporting.
            if target and target != here:
                edges[here].add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def long_functions(files, limit):
    found = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            raw = fh.read()
        text = strip_comments_and_strings(raw)
        for m in re.finditer(r"\bfn\s+(\w+)", text):
            open_at = None
            i = m.end()
            while i < len(text):
                if text[i] == ";":
                    break  # a declaration without a body
                if text[i] == "{":
                    open_at = i
                    break
                i += 1
            if open_at is None:
                continue
            depth, j = 0, open_at
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            first = text.count("\n", 0, m.start()) + 1
            last = text.count("\n", 0, j) + 1
            lines = last - first + 1
            if lines > limit:
                found.append((lines, os.path.relpath(f, os.path.join(SRC, "..")), first, m.group(1)))
    return sorted(found, reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-functions", type=int, metavar="N")
    args = parser.parse_args()
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(SRC) for f in fs if f.endswith(".rs")
    )
    edges = graph(files)
    found = cycles(edges)
    for comp in found:
        print("cycle: " + " <-> ".join(comp or ["crate"]))
    if not found:
        print(f"no import cycles among {len(edges)} modules")
    if args.long_functions is not None:
        for lines, path, line, name in long_functions(files, args.long_functions):
            print(f"{lines:4} lines  {path}:{line}  fn {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
