#!/usr/bin/env python3
"""No include cycle and no two modules needing each other.

Usage: check_deps.py SOURCE_DIR OBJECT...   (ctest runs it as deps_acyclic;
$NM names the nm to use)

1. Headers: the "..." includes among include/*.h and src/**/*.h form no
   cycle (a header is resolved beside its includer, then in include/,
   then in src/, as the compiler's -I order does).
2. Modules: a module is a source file directly under src/, or a folder
   under src/ with all its files (their objects), except the leaves
   named in LEAVES, each a module of its own: src/sec/crypt.c wraps
   libsodium for the whole tree, src/core/rotation.c is the pure
   refresh-rotation rule that the storage flow asks inside its
   transaction; neither uses anything of ours. Module A needs
   module B when A's object uses a symbol B's object defines (nm).
   No two modules need each other, and the whole graph has no cycle
   (strongly connected components of one module only).
3. libmicrohttpd: only src/server.c includes <microhttpd.h>, so every
   handler runs on a request context without a connection (unit tests
   call them with a fake one).
Prints each violation and exits 1; exits 0 when there is none.
"""
import os
import re
import subprocess
import sys

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def headers(root):
    """Every project header, by its path relative to root."""
    out = []
    for top in ("include", "src"):
        for d, _, files in os.walk(os.path.join(root, top)):
            out += [os.path.relpath(os.path.join(d, f), root)
                    for f in files if f.endswith(".h")]
    return sorted(out)


def resolve(root, includer, name):
    """The project header `#include "name"` in `includer` names, or None
    (a system or generated header)."""
    for base in (os.path.dirname(includer), "include", "src"):
        cand = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def header_graph(root):
    graph = {}
    for h in headers(root):
        with open(os.path.join(root, h), encoding="utf-8") as f:
            text = f.read()
        deps = {resolve(root, h, n) for n in INCLUDE_RE.findall(text)}
        graph[h] = sorted(d for d in deps if d and d != h)
    return graph


def sccs(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, ()))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


MHD_RE = re.compile(r'^\s*#\s*include\s+<microhttpd\.h>', re.M)
MHD_ALLOWED = {"src/server.c"}


def mhd_users(root):
    """Project files that include <microhttpd.h>."""
    out = []
    for top in ("include", "src"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(d, f)
                with open(path, encoding="utf-8") as fh:
                    if MHD_RE.search(fh.read()):
                        out.append(os.path.relpath(path, root))
    return sorted(out)


def nm(obj, *flags):
    tool = os.environ.get("NM") or "nm"
    res = subprocess.run([tool, "-P", *flags, obj], check=True,
                         capture_output=True, text=True)
    return [line.split() for line in res.stdout.splitlines() if line]


LEAVES = ("src/sec/crypt.c", "src/core/rotation.c")


def module_name(obj):
    """The module of an object: a file directly under src/ is one
    (src/server.c), a folder under src/ is one with all its files
    (src/repo, whose files share a private header), a leaf of LEAVES
    is one of its own."""
    path = obj.replace(os.sep, "/")
    i = path.rfind("/src/")
    rel = path[i + 1:] if i >= 0 else os.path.basename(path)
    parts = rel.split("/")
    if re.sub(r"\.o(bj)?$", "", rel) in LEAVES:
        return re.sub(r"\.o(bj)?$", "", rel)
    if len(parts) > 2:
        return "/".join(parts[:2])
    return re.sub(r"\.o(bj)?$", "", rel)


def module_graph(objects):
    defines, uses = {}, {}
    for obj in objects:
        mod = module_name(obj)
        for f in nm(obj, "--defined-only", "--extern-only"):
            defines.setdefault(f[0], mod)
        uses.setdefault(mod, set()).update(
            f[0] for f in nm(obj, "--undefined-only"))
    graph = {}
    for mod, syms in uses.items():
        graph[mod] = sorted({defines[s] for s in syms
                             if s in defines and defines[s] != mod})
    return graph


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, objects = argv[1], argv[2:]
    bad = 0
    hg = header_graph(root)
    for comp in sccs(hg):
        if len(comp) > 1:
            print("include cycle among: " + ", ".join(comp))
            bad += 1
    mg = module_graph(objects)
    for a in sorted(mg):
        for b in mg[a]:
            if a < b and a in mg.get(b, ()):
                print(f"modules need each other: {a} <-> {b}")
                bad += 1
    for comp in sccs(mg):
        if len(comp) > 1:
            print("modules in a dependency cycle: " + ", ".join(comp))
            bad += 1
    for path in mhd_users(root):
        if path not in MHD_ALLOWED:
            print(f"includes <microhttpd.h> outside server.c: {path}")
            bad += 1
    print(f"{len(hg)} headers, {len(mg)} modules, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
