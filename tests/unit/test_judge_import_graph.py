"""The modules of the `lite` package import each other as a tree (strictly: a graph without cycles).

The graph is that of the whole ``lite`` package, so a cycle through another package counts too.
Every import statement counts, at the top of a module, inside a function or under
``TYPE_CHECKING``: a cycle that only works because one of its imports is deferred is still a
cycle. The graph is read from the source with ``ast``, nothing is imported. A package's own
``__init__`` counts only where it is imported by name (``from lite.judge import judge_files``),
not as the parent every submodule import runs first. A failure names each cycle, module by module.

Any cycle in the package fails (``report.tables`` and ``report.captions`` imported each other
until the findings measured from an artefact's inputs moved to ``report.findings``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import lite

PACKAGE = Path(lite.__file__).parent
SCOPE = "lite"  # cycles through a module of this package fail the test


def module_files() -> dict[str, Path]:
    """Module name -> source file, for every module of ``lite`` (packages by their ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("lite", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``lite`` modules that the module ``name`` (source at ``path``) imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: ``from .x import y`` counts from the module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # ``from lite.judge import api`` imports a module; ``from lite.judge import now`` its package
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of two or more modules that each reach one another (Tarjan): every cycle lies in one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_within(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A shortest cycle ``[start, ..., start]`` inside ``group``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_the_graph_sees_deferred_and_relative_imports(tmp_path):
    package = tmp_path / "lite" / "sub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from . import high\n")
    (package / "high.py").write_text("from lite.sub.low import f\n")
    modules = {"lite.sub": package / "__init__.py", "lite.sub.low": package / "low.py",
               "lite.sub.high": package / "high.py"}  # fmt: skip
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert graph == {"lite.sub": set(), "lite.sub.low": {"lite.sub.high"}, "lite.sub.high": {"lite.sub.low"}}
    (group,) = strongly_connected(graph)
    assert cycle_within(graph, group, "lite.sub.low") == ["lite.sub.low", "lite.sub.high", "lite.sub.low"]


def in_scope(module: str) -> bool:
    return module == SCOPE or module.startswith(SCOPE + ".")


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"lite.judge.settings", "lite.judge.claude", "lite.cli"} <= set(graph)  # the walk found them
    found = []
    for group in strongly_connected(graph):
        members = sorted(filter(in_scope, group))
        if members:
            cycle = " -> ".join(cycle_within(graph, group, members[0]))
            found.append(f"{cycle} (on cycles together: {', '.join(sorted(group))})")
    assert not found, "import cycles:\n" + "\n".join(found)


def test_what_the_snakefile_imports_loads_no_sdk():
    """The Snakefile imports ``lite.judge`` and ``lite.judge.openai_compat`` on every parse (dry runs
    too); the SDKs (seconds to import) wait for the functions that call an API."""
    code = (
        "import json, sys, lite.judge, lite.judge.openai_compat;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'anthropic', 'openai'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
