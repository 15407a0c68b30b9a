#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

A module is a source file (`foo.rs` or `foo/mod.rs`); it depends on every
module of the same crate it names through `crate::` or `super::` outside its
`#[cfg(test)]` part, also through the crate root's re-exports (`crate::Name`
where lib.rs says `pub use module::Name`). A parent declaring its child
modules is not a dependency.
ARCHITECTURE.md asks for small modules with one job and no import cycles;
scripts/check-style.sh runs this over every crate.
"""
import os
import re
import sys


def modules(src):
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                found["::".join(parts)] = path
    return found


def root_exports(mods):
    """Names the crate root re-exports, with the module each comes from."""
    exports = {}
    root = mods.get("")
    if root is None:
        return exports
    text = re.sub(r"//.*", "", open(root, encoding="utf-8").read())
    for module, names in re.findall(r"pub use ([a-z_0-9]+(?:::[a-z_0-9]+)*)::\{([^}]*)\}", text):
        for name in re.findall(r"\b([A-Za-z_0-9]+)\b", names):
            exports[name] = module
    for module, name in re.findall(r"pub use ([a-z_0-9]+(?:::[a-z_0-9]+)*)::([A-Za-z_0-9]+);", text):
        exports[name] = module
    return exports


def dependencies(src):
    mods = modules(src)
    exports = root_exports(mods)
    graph = {}
    for module, path in mods.items():
        text = open(path, encoding="utf-8").read()
        text = text.split("#[cfg(test)]")[0]
        text = re.sub(r"//.*", "", text)
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        here = set()

        def add(segments):
            for k in range(len(segments), 0, -1):
                name = "::".join(segments[:k])
                if name in mods and name != module and not module.startswith(name + "::"):
                    here.add(name)
                    return

        for name in re.findall(r"\bcrate::([A-Za-z_0-9]+)\b(?!::)", text):
            if name in exports:
                add(exports[name].split("::"))
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            for name in re.findall(r"\b([A-Za-z_0-9]+)\b", group):
                if name in exports:
                    add(exports[name].split("::"))
        for base, rest in re.findall(r"\b(crate|super)::([a-z_0-9]+(?:::[a-z_0-9]+)*)", text):
            prefix = parent.split("::") if base == "super" and parent else []
            add(prefix + rest.split("::"))
        for base, group in re.findall(r"use (crate|super)::\{([^}]*)\}", text):
            prefix = parent.split("::") if base == "super" and parent else []
            for name in re.findall(r"\b([a-z_0-9]+)\b", group):
                add(prefix + [name])
        graph[module] = here
    return graph


def cycles(graph):
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(sources):
    failed = False
    for src in sources:
        for component in cycles(dependencies(src)):
            failed = True
            print(f"{src}: modules import each other in a cycle: {', '.join(component)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
