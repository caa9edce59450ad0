#!/usr/bin/env python3
"""Checks the layering of routemesh's sources (see docs/layout.md).

Two rules:

1. Includes follow the folder table. Every `#include "..."` in a tracked .h/.cc file is mapped,
   with the file that holds it, to a folder of the table in docs/layout.md (the longest folder
   that is a prefix of the path). A folder may include itself and the folders its row lists;
   `folder[core]` allows only that folder's pure-core files (those reachable from the sources
   of its `rm_*_core` targets).
2. Pure cores stay pure. The sources of every `add_library(rm_*_core ...)` in a CMakeLists.txt,
   and every repository header they include (transitively), must not include Asio, Beast or the
   socket headers.

Prints one line per violation (`file:line: ...`) and exits 1 if there is any, 0 otherwise.
`--self-test` copies the tree to a temporary directory, plants violations of each kind and
checks that every one is reported. Standard library only.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

LAYOUT_DOC = "docs/layout.md"
SOURCE_EXTS = (".h", ".cc")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
# System headers a pure core may not reach: Asio, Beast and the socket API. (<arpa/inet.h> is
# allowed: inet_pton/inet_ntop only convert text and bytes.)
FORBIDDEN_IN_CORE = re.compile(
    r"^(boost/asio(\.hpp|/)|boost/beast(\.hpp|/)|sys/socket\.h$|netinet/|sys/epoll\.h$)")
ADD_LIBRARY_RE = re.compile(r"add_library\s*\(([^)]*)\)", re.S)
LIBRARY_KEYWORDS = {"STATIC", "SHARED", "OBJECT", "MODULE", "INTERFACE", "EXCLUDE_FROM_ALL"}


class Tree:
    """The files of one source tree and what they include."""

    def __init__(self, root):
        self.root = root
        self.files = self._list_files()
        self.fileset = set(self.files)
        self._includes = {}

    def _list_files(self):
        if os.path.exists(os.path.join(self.root, ".git")):
            out = subprocess.run(["git", "-C", self.root, "ls-files", "-z", "--cached", "--others",
                                  "--exclude-standard"], check=True,
                                 capture_output=True).stdout.decode()
            # Tracked and new (not ignored) files; deleted ones are gone for the compiler too.
            return sorted(set(f for f in out.split("\0")
                              if f and os.path.isfile(os.path.join(self.root, f))))
        files = []
        for d, dirs, names in os.walk(self.root):
            rel = os.path.relpath(d, self.root)
            dirs[:] = [x for x in dirs if not (rel == "." and (x.startswith("build") or
                                                               x.startswith(".")))]
            for n in names:
                files.append(os.path.normpath(os.path.join(rel, n)))
        return sorted(files)

    def read(self, path):
        with open(os.path.join(self.root, path), encoding="utf-8", errors="replace") as f:
            return f.read()

    def includes(self, path):
        """[(line, kind, target)]: kind '"' for a repository include (target resolved to a
        tracked path, or None), '<' for a system include (target as written)."""
        if path not in self._includes:
            result = []
            for n, text in enumerate(self.read(path).splitlines(), 1):
                m = INCLUDE_RE.match(text)
                if not m:
                    continue
                kind, name = m.group(1), m.group(2)
                if kind == "<":
                    result.append((n, "<", name))
                    continue
                # Ours are rooted at the repository root; fall back to the including folder.
                for cand in (name, os.path.normpath(os.path.join(os.path.dirname(path), name))):
                    if cand in self.fileset:
                        result.append((n, '"', cand))
                        break
                else:
                    result.append((n, '"', None))
            self._includes[path] = result
        return self._includes[path]

    def sources(self):
        return [f for f in self.files if f.endswith(SOURCE_EXTS)]


def parse_table(tree):
    """{folder: (allowed set or '*', core-only set)} from the ```layers block of docs/layout.md."""
    text = tree.read(LAYOUT_DOC)
    m = re.search(r"^```layers\n(.*?)^```", text, re.S | re.M)
    if not m:
        raise SystemExit(f"{LAYOUT_DOC}: no ```layers block")
    table = {}
    for n, line in enumerate(m.group(1).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        folder, sep, rest = line.partition(":")
        if not sep:
            raise SystemExit(f"{LAYOUT_DOC}: layers line {n}: expected 'folder: allowed...'")
        allowed, core_only = set(), set()
        for item in rest.replace(",", " ").split():
            if item == "*":
                allowed = "*"
            elif item in ("-", "—"):
                continue
            elif item.endswith("[core]"):
                core_only.add(item[:-len("[core]")].rstrip("/"))
            else:
                allowed.add(item.rstrip("/"))
        table[folder.strip().rstrip("/")] = (allowed, core_only)
    return table


def folder_of(path, table):
    best = None
    for folder in table:
        if path.startswith(folder + "/") and (best is None or len(folder) > len(best)):
            best = folder
    return best


def core_targets(tree):
    """{target: [source paths]} for every add_library(rm_*_core ...)."""
    targets = {}
    for cm in tree.files:
        if os.path.basename(cm) != "CMakeLists.txt":
            continue
        base = os.path.dirname(cm)
        body = re.sub(r"#[^\n]*", "", tree.read(cm))
        for m in ADD_LIBRARY_RE.finditer(body):
            words = m.group(1).split()
            if not words or not re.fullmatch(r"rm_\w+_core", words[0]):
                continue
            srcs = [os.path.normpath(os.path.join(base, w)) for w in words[1:]
                    if w not in LIBRARY_KEYWORDS and "$" not in w]
            targets[words[0]] = [s for s in srcs if s.endswith(SOURCE_EXTS)]
    return targets


def core_closure(tree, targets):
    """{file: (target, chain)}: every repository file a core target's sources reach, with the
    include chain that reaches it (for the message)."""
    reached = {}
    for target, srcs in sorted(targets.items()):
        stack = []
        for s in srcs:
            seeds = [s]
            header = os.path.splitext(s)[0] + ".h"
            if header in tree.fileset:
                seeds.append(header)
            for f in seeds:
                if f in tree.fileset and f not in reached:
                    reached[f] = (target, [f])
                    stack.append(f)
        while stack:
            f = stack.pop()
            for _, kind, inc in tree.includes(f):
                if kind == '"' and inc and inc not in reached:
                    reached[inc] = (target, reached[f][1] + [inc])
                    stack.append(inc)
    return reached


def check(root):
    tree = Tree(root)
    table = parse_table(tree)
    targets = core_targets(tree)
    closure = core_closure(tree, targets)
    problems = []

    for path in tree.sources():
        src = folder_of(path, table)
        if src is None:
            problems.append(f"{path}:1: folder {os.path.dirname(path) or '.'} is not in the "
                            f"table of {LAYOUT_DOC}")
            continue
        allowed, core_only = table[src]
        for line, kind, inc in tree.includes(path):
            if kind != '"' or inc is None or allowed == "*":
                continue
            dst = folder_of(inc, table)
            if dst == src or dst in allowed:
                continue
            if dst in core_only:
                if inc in closure:
                    continue
                problems.append(f"{path}:{line}: folder {src} may include only the pure core "
                                f"of {dst}, not {inc}")
                continue
            problems.append(f"{path}:{line}: folder {src} may not include {dst} ({inc})")

    for path in sorted(closure):
        target, chain = closure[path]
        for line, kind, inc in tree.includes(path):
            if kind == "<" and FORBIDDEN_IN_CORE.match(inc):
                via = " via " + " -> ".join(chain) if len(chain) > 1 else ""
                problems.append(f"{path}:{line}: pure core {target} may not include <{inc}>{via}")
    return problems


def self_test(root):
    """Plants one violation of each kind in a copy of the tree; each must be reported."""
    tree = Tree(root)
    with tempfile.TemporaryDirectory(prefix="check_layers.") as tmp:
        for f in set(tree.files) | {LAYOUT_DOC}:
            if f.endswith(SOURCE_EXTS) or os.path.basename(f) == "CMakeLists.txt" or \
                    f == LAYOUT_DOC:
                os.makedirs(os.path.join(tmp, os.path.dirname(f)), exist_ok=True)
                shutil.copy2(os.path.join(root, f), os.path.join(tmp, f))
        # Compared without line numbers: planting a line moves the ones below it.
        def unnumbered(problems):
            return {re.sub(r":\d+: ", ": ", p, count=1) for p in problems}

        baseline = unnumbered(check(tmp))

        def add_line(path, line):
            p = os.path.join(tmp, path)
            with open(p, encoding="utf-8") as f:
                lines = f.read().split("\n")
            # After the first line (#pragma once or the file's own header), so line 2.
            lines.insert(1, line)
            with open(p, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))

        def first(paths):
            for p in paths:
                if os.path.isfile(os.path.join(tmp, p)):
                    return p
            raise SystemExit(f"self-test: none of {paths} exists")

        planted = []
        # 1. A folder includes one above it in the table.
        low = first(["base/check.h", "config/types.h"])
        add_line(low, '#include "proxy/server.h"')
        planted.append((low, "may not include proxy"))
        # 2. A pure core includes Asio directly.
        core_src = first(["mesh/route_table.cc", "config/config.cc"])
        add_line(core_src, "#include <boost/asio/io_context.hpp>")
        planted.append((core_src, "may not include <boost/asio/io_context.hpp>"))
        # 3. ... or through a repository header of its own (transitively).
        helper = os.path.join(os.path.dirname(core_src), "planted_socket_helper.h")
        with open(os.path.join(tmp, helper), "w", encoding="utf-8") as f:
            f.write("#pragma once\n#include <sys/socket.h>\n")
        add_line(core_src, f'#include "{helper}"')
        planted.append((helper, "may not include <sys/socket.h> via"))
        # 4. The agent reaches past the store's pure core to its driver.
        agent = first(["discovery/agent/watch_client.cc"])
        add_line(agent, '#include "discovery/store/store.h"')
        planted.append((agent, "only the pure core of discovery/store"))

        found = unnumbered(check(tmp))
        new = found - baseline
        ok = True
        for path, what in planted:
            hits = [p for p in new if p.startswith(path + ": ") and what in p]
            print(f"self-test: {'caught' if hits else 'MISSED'}: {path}: {what}")
            ok = ok and bool(hits)
        lost = baseline - found
        if lost:
            ok = False
            print("self-test: planting hid earlier violations:", *sorted(lost), sep="\n  ")
    print("self-test:", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="repository root (default: this script's repository)")
    ap.add_argument("--self-test", action="store_true",
                    help="plant violations in a temporary copy and check they are caught")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.root)
    problems = check(args.root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} violation(s); the table is in {LAYOUT_DOC}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
