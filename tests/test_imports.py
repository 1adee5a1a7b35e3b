"""The rooms' import order (docs/ARCHITECTURE.md, "Rooms and imports"), checked on the source.

Every `import` / `from ... import` in xib/ and flows/ counts, at module level or inside a function
(a lazy import is still a dependency); only `if TYPE_CHECKING:` blocks do not (never run). A module may
import its own layer and the layers below it; no set of modules may import each other in a circle.
A package importing its own submodules (a registry such as xib.models.encoders.build_encoder) is
containment, not a dependency: the package is always imported before its submodules anyway.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lowest first. The first pattern that matches a module names its layer (commands before rooms).
LAYERS: list[tuple[str, list[str]]] = [
    ("cli", ["xib.cli", "xib.commands", "xib.*.commands", "xib.stages", "xib.pipeline.seeds"]),  # run stages
    ("flows", ["flows", "flows.*"]),
    ("base", ["xib", "xib.errors", "xib.io", "xib.net", "xib.modalities", "xib.hashing", "xib.schedule"]),
    ("base", ["xib.prompts", "xib.answers", "xib.mlflow_store", "xib.scrub", "xib.transient"]),
    ("config", ["xib.*.config", "xib.models.bootstrap_config", "xib.config", "xib.config_rules"]),
    ("data", ["xib.data", "xib.data.*"]),
    ("models", ["xib.models", "xib.models.*"]),
    ("train", ["xib.train", "xib.train.*"]),
    ("runtime", ["xib.runtime", "xib.runtime.*"]),
    ("eval", ["xib.eval", "xib.eval.*"]),
    ("registry", ["xib.registry", "xib.registry.*"]),
    ("serve", ["xib.serve", "xib.serve.*"]),
    (
        "pipeline",
        [
            "xib.pipeline",
            "xib.pipeline.*",
            "xib.dashboard",
            "xib.dashboard_template",
            "xib.dashboard_training",
        ],
    ),
]
ORDER = [
    "base",
    "config",
    "data",
    "models",
    "train",
    "runtime",
    "eval",
    "registry",
    "serve",
    "pipeline",
    "cli",
]
ORDER.append("flows")  # the library never imports the flows

# Known exceptions, to delete once fixed. Nothing else may import upward.
ALLOWED_UPWARD: set[tuple[str, str]] = set()  # no exceptions to the room order


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*REPO.glob("xib/**/*.py"), *REPO.glob("flows/**/*.py")]):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a `from pkg import mod` counts as pkg.mod when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    targets: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(
                f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known
            )
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not target.startswith(name + "."):  # containment is not a dependency
            resolved.add(target)
    return resolved


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> str | None:
    for layer, patterns in LAYERS:
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return layer
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in modules() if layer_of(m) is None)
    assert not unplaced, (
        f"give these a layer (tests/test_imports.py LAYERS, docs/ARCHITECTURE.md): {unplaced}"
    )


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in sorted(import_graph().items())
        for b in sorted(targets)
        if (a, b) not in ALLOWED_UPWARD
        and ORDER.index(layer_of(b) or "flows") > ORDER.index(layer_of(a) or "base")
    ]
    assert not upward, "imports against the room order:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = {a: {b for b in targets if (a, b) not in ALLOWED_UPWARD} for a, targets in import_graph().items()}
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_allowlist_names_real_imports():
    """An exception that no longer happens must be deleted, so the list only shrinks."""
    graph = import_graph()
    stale = sorted(edge for edge in ALLOWED_UPWARD if edge[1] not in graph.get(edge[0], set()))
    assert not stale, f"delete these from ALLOWED_UPWARD, they no longer import: {stale}"


def test_the_checker_sees_function_level_imports_and_cycles(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import xib.cli\n"
        "def f():\n    from xib.registry import registry\n"
    )
    known = {"xib.cli": path, "xib.registry": path, "xib.registry.registry": path, "xib.data.x": path}
    assert imports_of("xib.data.x", path, known) == {"xib.registry", "xib.registry.registry"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
