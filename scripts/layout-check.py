#!/usr/bin/env python3
"""The layering rules of docs/architecture.md, checked on the source tree.

1. No Rust file outside src/binding/ names mlua (the binding layer is the
   only Rust code that touches Lua).
2. Nothing in src/engine/ imports crate::binding (the engine knows nothing
   of Lua).
3. No two modules of src/ import each other, directly or round a loop.
4. No face runs a Lua pattern over a URL (faces take URLs apart with
   core.split_url and only apply their original's rules to the parts).

Prints one line per failed rule and ends with "layout: N passed, M failed".
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
FACES = os.path.join(ROOT, "lua", "turbo_ws")


def rust_files():
    for root, _, files in os.walk(SRC):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(root, f)


def code_of(path):
    """The file without its test module and without comments."""
    text = open(path, encoding="utf-8").read()
    test = text.find("#[cfg(test)]")
    if test >= 0:
        text = text[:test]
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def module_name(path):
    rel = os.path.relpath(path, SRC)[:-3].replace(os.sep, "::")
    return rel[: -len("::mod")] if rel.endswith("::mod") else rel


def imports(code, name, modules):
    """The modules of this crate that `name`'s code refers to."""
    refs = set(re.findall(r"crate::((?:binding|engine)(?:::\w+){1,2})", code))
    for layer, group in re.findall(r"crate::(binding|engine)::\{([^}]*)\}", code):
        refs.update(layer + "::" + item.strip().split("::")[0] for item in group.split(",") if item.strip())
    parent = name.rsplit("::", 1)[0]
    refs.update(parent + "::" + m for m in re.findall(r"\bsuper::(\w+)", code))
    found = set()
    for ref in refs:
        parts = ref.split("::")
        for n in (3, 2):
            candidate = "::".join(parts[:n])
            if candidate in modules and candidate != name:
                found.add(candidate)
                break
    return found


def cycles(graph):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    failures = []
    files = list(rust_files())
    code = {module_name(p): code_of(p) for p in files}
    paths = {module_name(p): os.path.relpath(p, ROOT) for p in files}

    outside = [paths[m] for m, c in code.items() if not m.startswith("binding") and re.search(r"\bmlua\b", c)]
    if outside:
        failures.append("mlua named outside src/binding: " + ", ".join(sorted(outside)))

    engine_up = [paths[m] for m, c in code.items() if m.startswith("engine") and "crate::binding" in c]
    if engine_up:
        failures.append("src/engine imports crate::binding: " + ", ".join(sorted(engine_up)))

    graph = {m: imports(c, m, code) for m, c in code.items()}
    for group in cycles(graph):
        failures.append("import cycle: " + " <-> ".join(group))

    url_pattern = re.compile(r"""(?:match|find|gmatch|gsub)\s*\(.*?(?:://|:%/%/|:/+)""")
    for root, _, files_ in os.walk(FACES):
        for f in sorted(files_):
            if not f.endswith(".lua"):
                continue
            path = os.path.join(root, f)
            for n, line in enumerate(open(path, encoding="utf-8"), 1):
                if url_pattern.search(line.split("--", 1)[0]):
                    failures.append(f"a face parses a URL: {os.path.relpath(path, ROOT)}:{n}")

    for failure in failures:
        print(failure)
    rules = 4
    failed = len({f.split(":", 1)[0] for f in failures})
    print(f"layout: {rules - failed} passed, {failed} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
