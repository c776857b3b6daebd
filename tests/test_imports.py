"""The package's layers and its one-way imports, read from the source with ast (nothing is imported).

Every module of dreamflow_utils belongs to one layer of `LAYERS`; a module imports (at module level
or inside a function) only from its own layer and the layers before it; the modules import each
other without a cycle; and nothing outside dreamflow_utils/engines/ imports an engine's own module:
runners meet the engines through `dreamflow_utils.engines` (`make_engine`, `REGISTRY`, ...).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dreamflow_utils"
ROOT = PACKAGE.name

# Lowest first. A layer is named by paths under dreamflow_utils/ (a folder ends with "/"); a module
# belongs to the layer of its longest matching path.
LAYERS = (
    ("core", ("core/",),
     "What the log's model is (configuration, patch geometry, data sets, weights, atomic files, the log's "
     "experiments, quick mode), knowing nothing else of the package."),
    ("engines", ("engines/",),
     "The learning rule, once per backend behind one interface, made through the registry (`make_engine`), "
     "reading only the core."),
    ("training", ("core/train.py", "__init__.py"),
     "The one training loop, which drives whatever engine the registry makes, and the public API "
     "(`dreamflow_utils`) that exports it."),
    ("plots", ("plots/",),
     "Figures and the live view, which draw weights and accuracies and know nothing of how they were made."),
    ("sweeps", ("sweeps/",),
     "The batch: runs of a notebook or of any named function, their resumable store and the shared "
     "command-line checks, knowing no study."),
    ("studies", ("studies/",),
     "The research: named models run through the batch, what is measured on them (probes, translation, "
     "baselines), their tables and the accuracy bands their committed records give."),
    ("bench", ("bench.py",),
     "The engines' speed, measured in one process or as a batch."),
    ("notebook", ("notebook/",),
     "What the notebooks call (setup, the checks against the bands, the explorer, the engines' speed): the top, "
     "which no other layer imports."),
)
ENGINES = f"{ROOT}.engines"


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = (ROOT, *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    """The index in LAYERS of `module`'s layer (longest matching path); KeyError if none matches."""
    rel = MODULES[module].relative_to(PACKAGE).as_posix()
    best = max(((len(p), i) for i, (_, paths, _) in enumerate(LAYERS) for p in paths
                if rel == p or (p.endswith("/") and rel.startswith(p))), default=None)
    if best is None:
        raise KeyError(f"{module} ({rel}) is in no layer of LAYERS")
    return best[1]


class _Imports(ast.NodeVisitor):
    """(imported module, line, inside a function) of every import of the package in one module."""

    def __init__(self, module: str):
        self.module, self.depth, self.found = module, 0, []
        is_package = MODULES[module].name == "__init__.py"
        self.package = module if is_package else module.rpartition(".")[0]

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, target: str, node):
        if target == ROOT or target.startswith(ROOT + "."):
            self.found.append((target, node.lineno, self.depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node):
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module
        for alias in node.names:  # `from pkg import name`: the submodule pkg.name if it is one
            self._add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, node)


def _edges() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) over the package."""
    edges = []
    for module, path in MODULES.items():
        visitor = _Imports(module)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges += [(module, target, line, lazy) for target, line, lazy in visitor.found]
    return edges


EDGES = _edges()


def _where(a: str, line: int) -> str:
    return f"{MODULES[a].relative_to(PACKAGE.parent).as_posix()}:{line}"


def test_every_module_belongs_to_a_layer_and_imports_existing_modules():
    for module in MODULES:
        _layer(module)
    missing = [f"{_where(a, line)} imports {b}" for a, b, line, _ in EDGES if b not in MODULES]
    assert missing == [], "imports of modules that do not exist: " + "; ".join(missing)


def test_layers_import_only_downwards():
    upward = [f"{_where(a, line)}: {a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
              for a, b, line, _ in EDGES if b in MODULES and _layer(b) > _layer(a)]
    assert upward == [], "imports against the layers " + " -> ".join(n for n, _, _ in LAYERS) + ":\n" \
        + "\n".join(upward)


def test_no_import_cycle():
    """No cycle between modules. One kind of edge is left out: a package's __init__ importing one of its
    own modules inside a function (a registry that loads its entries when asked, e.g. studies.registry),
    since those modules import the names the package defines."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, lazy in EDGES:
        registry = lazy and MODULES[a].name == "__init__.py" and b.rpartition(".")[0] == a
        if a != b and b in MODULES and not registry:
            graph[a].add(b)
    state, stack, cycles = {}, [], []

    def visit(m):  # depth-first; a grey module met again closes a cycle
        state[m] = "grey"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "grey":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "black"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_engines_are_met_through_their_package():
    inside = [f"{_where(a, line)} imports {b}" for a, b, line, _ in EDGES
              if b.startswith(ENGINES + ".") and not (a == ENGINES or a.startswith(ENGINES + "."))]
    assert inside == [], f"use {ENGINES}'s public names (make_engine, REGISTRY, ...): " + "; ".join(inside)
