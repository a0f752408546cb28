"""Structural tests that keep tunelab's architecture true: a layer map the imports must follow, no import
circles, bounded function and module sizes, and a config package that depends on nothing but tunelab.errors.

Everything is read with `ast` (nothing of tunelab, and no torch, is imported), so these tests are fast. Every
checker is a plain function of a package folder (and, for the layer map, of the map), so the same code runs on
`src/tunelab` and on small synthetic trees that plant each kind of violation. The real-tree tests list every
offender at once, not the first one found.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tunelab"

# The layer map: top-level package (or top-level module, e.g. tunelab/hashing.py -> "hashing") -> rank.
# An import may point only to a strictly lower rank, or within its own top-level package. Packages that share a
# rank are peers and may not import one another (an import under `if TYPE_CHECKING:` may point to a peer).
# A package or module found under src/tunelab but missing here fails the tests: add it at its rank, deliberately.
# Names not in the tree yet (orchestration, inference, report, catalog, atomic, paths) are the refactor's targets.
LAYERS: dict[str, int] = {
    "__main__": 13,                                            # `python -m tunelab`: may import cli
    "cli": 12,
    "orchestration": 11,
    "training": 10,
    "serving": 9, "export": 9, "report": 9,                    # peers: none imports another
    "inference": 8,
    "artifacts": 7,
    "catalog": 6,      # tunelab/catalog.py: full config validation over the task and strategy registries
    "strategies": 5, "tasks": 5,                               # peers: neither imports the other
    "models": 4,
    "data": 3,
    "config": 2, "evaluation": 2,                              # config imports nothing of tunelab but errors
    # The ground imports nothing of tunelab. tunelab/__init__.py ("__init__") is here because every import of
    # tunelab.* runs it first; configs is a data package (the shipped demo config).
    "errors": 1, "hashing": 1, "atomic": 1, "paths": 1, "optional": 1, "__init__": 1, "configs": 1,
}
MAX_FUNCTION_LINES = 50
MAX_MODULE_LINES = 400


@dataclass(frozen=True)
class Module:
    name: str       # dotted, e.g. "tunelab.config.schema"; the package's __init__.py is "tunelab.config"
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_checking: bool   # under `if TYPE_CHECKING:`
    in_function: bool     # a deferred import, inside a function or method

    def where(self) -> str:
        kind = "under TYPE_CHECKING" if self.type_checking else "inside a function" if self.in_function else ""
        return f"line {self.line}" + (f", {kind}" if kind else "")


def scan_modules(root: Path) -> dict[str, Module]:
    """Every .py file under the package folder `root`, by dotted module name (root.name is the top package)."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def top_package(module: str) -> str:
    """The layer-map key of a dotted module: "tunelab.config.schema" -> "config", "tunelab" -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_imports(nodes: Iterable[ast.AST], type_checking: bool = False,
                  in_function: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement in or below `nodes`, anywhere (functions, classes, try/if blocks), with whether it
    sits under `if TYPE_CHECKING:` and whether it sits inside a function."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_checking, in_function
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk_imports(node.body, True, in_function)
            yield from _walk_imports(node.orelse, type_checking, in_function)
        else:
            nested = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _walk_imports(ast.iter_child_nodes(node), type_checking, nested)


def _base_of(node: ast.ImportFrom, module: Module) -> str:
    """The absolute dotted module a `from X import ...` reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.Import | ast.ImportFrom, module: Module, known: Mapping[str, Module]) -> list[str]:
    """The dotted modules an import statement depends on: `from a.b import c` is a.b.c when that file exists."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _base_of(node, module)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_edges(root: Path) -> list[Edge]:
    """Every import of the package (`root.name`) made by a module under `root`, self-imports left out."""
    modules = scan_modules(root)
    top = root.name
    edges: list[Edge] = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for node, type_checking, in_function in _walk_imports([tree]):
            for target in dict.fromkeys(_targets(node, module, modules)):
                if (target == top or target.startswith(top + ".")) and target != module.name:
                    edges.append(Edge(module.name, target, node.lineno, type_checking, in_function))
    return edges


def unmapped_packages(root: Path, layers: Mapping[str, int]) -> list[str]:
    """Top-level packages and modules in the tree (or imported) that the layer map does not place."""
    found = {top_package(name) for name in scan_modules(root)}
    found |= {top_package(edge.target) for edge in import_edges(root)}
    return [f"{root.name}.{name} ({name}) is not in the layer map: add it to LAYERS at its rank"
            for name in sorted(found - set(layers))]


def _rank(package: str, layers: Mapping[str, int]) -> str:
    return f"rank {layers[package]}" if package in layers else "not in the layer map"


def _edge_allowed(edge: Edge, layers: Mapping[str, int]) -> bool:
    source, target = top_package(edge.source), top_package(edge.target)
    if source == target:
        return True
    if source not in layers or target not in layers:
        return False
    return layers[target] < layers[source] or (edge.type_checking and layers[target] == layers[source])


def _by_pair(edges: Iterable[Edge]) -> dict[tuple[str, str], list[Edge]]:
    """Edges grouped by (source, target) module, in line order."""
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in sorted(edges, key=lambda e: (e.source, e.target, e.line)):
        pairs.setdefault((edge.source, edge.target), []).append(edge)
    return pairs


def _where(edges: list[Edge]) -> str:
    """`[line 12, inside a function]`, with `; also lines 30, 41` when the pair is imported more than once."""
    more = f"; also line{'s' if len(edges) > 2 else ''} {', '.join(str(e.line) for e in edges[1:])}"
    return f"[{edges[0].where()}{more if len(edges) > 1 else ''}]"


def layer_violations(root: Path, layers: Mapping[str, int]) -> list[str]:
    """Every import that points up the layer map, to a peer, or to or from a package the map does not place,
    one line per (source, target) pair: `tunelab.a.b -> tunelab.c.d (a: rank X, c: rank Y)  [where]`."""
    lines: list[str] = []
    for (source, target), edges in _by_pair(e for e in import_edges(root) if not _edge_allowed(e, layers)).items():
        a, c = top_package(source), top_package(target)
        lines.append(f"{source} -> {target} ({a}: {_rank(a, layers)}, {c}: {_rank(c, layers)})  {_where(edges)}")
    return lines


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative, so deep graphs do not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            successor: Optional[str] = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    components.append(sorted(component))
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph.get(successor, ())))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return components


def import_cycles(root: Path) -> list[list[str]]:
    """Every strongly connected component of more than one module in the module import graph."""
    graph: dict[str, set[str]] = {name: set() for name in scan_modules(root)}
    for edge in import_edges(root):
        graph[edge.source].add(edge.target)
        graph.setdefault(edge.target, set())
    return sorted((c for c in strongly_connected(graph) if len(c) > 1), key=lambda c: (-len(c), c))


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method (nested ones too), with a qualified name."""
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)
    return walk(tree, "")


def oversized(root: Path, max_function: int, max_module: int) -> list[str]:
    """Functions over `max_function` lines (`def` to last line, decorators excluded) and modules over
    `max_module` lines."""
    offenders: list[str] = []
    for module in scan_modules(root).values():
        text = module.path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > max_module:
            offenders.append(f"module {module.name}: {lines} lines (max {max_module})")
        for name, func in _functions(ast.parse(text, filename=str(module.path))):
            length = (func.end_lineno or func.lineno) - func.lineno + 1
            if length > max_function:
                offenders.append(f"function {module.name}.{name}: {length} lines (line {func.lineno}, "
                                 f"max {max_function})")
    return offenders


def foreign_imports(root: Path, package: str, allowed: set[str]) -> list[str]:
    """Imports made by `root.name`.`package` of anything of the tree outside itself and the `allowed` modules,
    one line per (source, target) pair."""
    own = f"{root.name}.{package}"

    def inside(name: str) -> bool:
        return name == own or name.startswith(own + ".")

    foreign = (e for e in import_edges(root) if inside(e.source) and not inside(e.target) and e.target not in allowed)
    return [f"{source} -> {target}  {_where(edges)}" for (source, target), edges in _by_pair(foreign).items()]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


# ---- the real tree ---------------------------------------------------------------------------------------------

def test_every_package_is_in_the_layer_map() -> None:
    missing = unmapped_packages(SRC, LAYERS)
    assert not missing, _report("packages the layer map does not place", missing)


def test_imports_follow_the_layer_map() -> None:
    violations = layer_violations(SRC, LAYERS)
    assert not violations, _report("imports against the layer map (only strictly lower layers, or within the "
                                   "same top-level package)", violations)


def test_no_import_cycles() -> None:
    cycles = import_cycles(SRC)
    assert not cycles, _report("import circles (strongly connected components)",
                               [f"{len(c)} modules: {', '.join(c)}" for c in cycles])


def test_functions_and_modules_are_short() -> None:
    offenders = oversized(SRC, MAX_FUNCTION_LINES, MAX_MODULE_LINES)
    assert not offenders, _report("functions or modules over the size limits", offenders)


def test_config_imports_only_errors() -> None:
    foreign = foreign_imports(SRC, "config", {"tunelab.errors"})
    assert not foreign, _report("tunelab.config may import nothing of tunelab but tunelab.errors", foreign)


# ---- synthetic trees: every checker catches a planted violation and passes a clean tree -------------------------

SYNTHETIC_LAYERS: dict[str, int] = {"__init__": 1, "errors": 1, "base": 2, "left": 3, "right": 3, "top": 4}
CLEAN_TREE: dict[str, str] = {
    "__init__.py": "",
    "errors.py": "class Oops(Exception):\n    pass\n",
    "base/__init__.py": "from .core import thing\n",
    "base/core.py": "from ..errors import Oops\nthing = 1\n",
    "left/__init__.py": "",
    "left/a.py": "from typing import TYPE_CHECKING\nimport tunelab.base.core\nif TYPE_CHECKING:\n"
                 "    from tunelab.right import b\n",
    "right/__init__.py": "",
    "right/b.py": "from tunelab.base import core\nfrom tunelab import errors\n",
    "top/__init__.py": "",
    "top/main.py": "def run() -> None:\n    from tunelab.left import a\n    from tunelab.right.b import core\n",
}


def make_tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "tunelab"
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


def test_synthetic_import_resolution(tmp_path: Path) -> None:
    root = make_tree(tmp_path, CLEAN_TREE)
    edges = {(e.source, e.target, e.type_checking, e.in_function) for e in import_edges(root)}
    assert edges == {
        ("tunelab.base", "tunelab.base.core", False, False),
        ("tunelab.base.core", "tunelab.errors", False, False),
        ("tunelab.left.a", "tunelab.base.core", False, False),
        ("tunelab.left.a", "tunelab.right.b", True, False),
        ("tunelab.right.b", "tunelab.base.core", False, False),
        ("tunelab.right.b", "tunelab.errors", False, False),
        ("tunelab.top.main", "tunelab.left.a", False, True),
        ("tunelab.top.main", "tunelab.right.b", False, True),
    }


def test_synthetic_clean_tree_passes_every_checker(tmp_path: Path) -> None:
    root = make_tree(tmp_path, CLEAN_TREE)
    assert unmapped_packages(root, SYNTHETIC_LAYERS) == []
    assert layer_violations(root, SYNTHETIC_LAYERS) == []
    assert import_cycles(root) == []
    assert oversized(root, 5, 10) == []
    assert foreign_imports(root, "base", {"tunelab.errors"}) == []


def test_synthetic_unmapped_package_fails(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {**CLEAN_TREE, "extra/__init__.py": "", "loose.py": "from tunelab.top import main\n"})
    missing = unmapped_packages(root, SYNTHETIC_LAYERS)
    assert len(missing) == 2 and "tunelab.extra (extra)" in missing[0] and "tunelab.loose (loose)" in missing[1]
    assert all("add it to LAYERS" in line for line in missing)
    assert layer_violations(root, SYNTHETIC_LAYERS) == [
        "tunelab.loose -> tunelab.top.main (loose: not in the layer map, top: rank 4)  [line 1]"]


@pytest.mark.parametrize(("relative", "text", "expected"), [
    ("base/core.py", "def f() -> None:\n    from tunelab.top import main\n",
     "tunelab.base.core -> tunelab.top.main (base: rank 2, top: rank 4)  [line 2, inside a function]"),
    ("left/up.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tunelab.top.main import run\n",
     "tunelab.left.up -> tunelab.top.main (left: rank 3, top: rank 4)  [line 3, under TYPE_CHECKING]"),
    ("right/peer.py", "from ..left import a\n", "tunelab.right.peer -> tunelab.left.a (right: rank 3, left: rank 3)  "
                                                  "[line 1]"),
    ("errors.py", "import tunelab\n", "tunelab.errors -> tunelab (errors: rank 1, __init__: rank 1)  [line 1]"),
])
def test_synthetic_layer_violation_is_caught(tmp_path: Path, relative: str, text: str, expected: str) -> None:
    root = make_tree(tmp_path, {**CLEAN_TREE, relative: text})
    assert layer_violations(root, SYNTHETIC_LAYERS) == [expected]


def test_synthetic_layer_violations_are_all_listed(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {**CLEAN_TREE, "errors.py": "from tunelab.base import core\nimport tunelab.top\n",
                                "right/b.py": "from tunelab.left import a\nfrom tunelab.left import a as again\n"})
    assert layer_violations(root, SYNTHETIC_LAYERS) == [
        "tunelab.errors -> tunelab.base.core (errors: rank 1, base: rank 2)  [line 1]",
        "tunelab.errors -> tunelab.top (errors: rank 1, top: rank 4)  [line 2]",
        "tunelab.right.b -> tunelab.left.a (right: rank 3, left: rank 3)  [line 1; also line 2]",
    ]


def test_synthetic_import_cycles_are_found(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {**CLEAN_TREE, "errors.py": "def f() -> None:\n    from tunelab.left import a\n",
                                "top/x.py": "from . import y\n", "top/y.py": "from .x import name\n"})
    # errors -> left.a -> base.core -> errors, and left.a -> right.b (TYPE_CHECKING) -> base.core joins it
    assert import_cycles(root) == [["tunelab.base.core", "tunelab.errors", "tunelab.left.a", "tunelab.right.b"],
                                   ["tunelab.top.x", "tunelab.top.y"]]


def test_strongly_connected_components() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"f"}, "g": set()}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d", "e"], ["f"], ["g"]]
    chain = {str(i): {str(i + 1)} for i in range(5000)} | {"5000": {"0"}}
    assert [len(c) for c in strongly_connected(chain)] == [5001]


def test_synthetic_oversized_code_is_caught(tmp_path: Path) -> None:
    long_method = "class K:\n    @staticmethod\n    def m() -> None:\n" + "        x = 1\n" * 5
    root = make_tree(tmp_path, {**CLEAN_TREE, "top/long.py": long_method + "\n" * 4})
    assert oversized(root, 5, 10) == ["module tunelab.top.long: 12 lines (max 10)",
                                      "function tunelab.top.long.K.m: 6 lines (line 3, max 5)"]
    assert oversized(root, 6, 12) == []


def test_synthetic_foreign_import_is_caught(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {**CLEAN_TREE, "base/core.py": "from ..errors import Oops\nimport tunelab.left.a\n"
                                "def f() -> None:\n    from tunelab import right\n    from tunelab import right\n"
                                "    from tunelab import right\n"})
    assert foreign_imports(root, "base", {"tunelab.errors"}) == [
        "tunelab.base.core -> tunelab.left.a  [line 2]",
        "tunelab.base.core -> tunelab.right  [line 4, inside a function; also lines 5, 6]",
    ]
