"""The package's import graph: no cycles, no import pointing up the layers, no imports hidden in functions.

Read from the source with ``ast`` (module-level ``import``/``from`` statements), so the test sees every
edge whether or not Python would stumble on it at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mtl.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "mtl"

# The flow, bottom up. A module may import modules of its own layer or below, never above.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundations", {"mtl.types", "mtl.config", "mtl.userload", "mtl.metrics", "mtl.ray_backend"}),
    ("data", {"mtl.sources", "mtl.data"}),
    # the network sits below weak supervision: model LFs (weak.model_lf) vote with checkpoints
    ("network", {"mtl.heads", "mtl.model", "mtl.checkpoint", "mtl.predict"}),
    (
        "training data engineering",
        {
            "mtl.weak",
            "mtl.weak.lf",
            "mtl.weak.apply",
            "mtl.weak.ray_apply",
            "mtl.weak.label_model",
            "mtl.weak.analysis",
            "mtl.weak.model_lf",
            "mtl.weak.neighbours",
            "mtl.weak.denoise",
            "mtl.slicing",
            "mtl.augment",
        },
    ),
    ("the per-task pipeline", {"mtl.task", "mtl.weak.pipeline", "mtl.prepare"}),
    (
        "training and evaluation",
        {
            "mtl.sampling",
            "mtl.features",
            "mtl.logger",
            "mtl.resume",
            "mtl.dist",
            "mtl.evaluate",
            "mtl.slice_discovery",
            "mtl.starting_model",
            "mtl.trainer",
            "mtl.bench",
        },
    ),
    (
        "commands",
        {
            "mtl.cli",
            "mtl.cli.sweep",
            "mtl.cli.train",
            "mtl.cli.evaluate",
            "mtl.cli.label",
            "mtl.cli.predict",
            "mtl.cli.bench",
            "mtl.cli.slices",
        },
    ),
    ("public API", {"mtl"}),
]
# Imports allowed inside functions: optional dependencies, or a heavy one only some runs need.
# (cleanlab and scikit-learn: weak.denoise only, 2.5 s of imports)
LOCAL_IMPORTS = {
    "torch.utils.tensorboard",
    "textblob",
    "cleanlab.count",
    "cleanlab.filter",
    "cleanlab.rank",
    "matplotlib.figure",  # the per-slice picture of a report: runs with slices only
}
LOCAL_IMPORTS |= {"sklearn.linear_model"}
# Ray: the optional backend=ray only. mtl.checkpoint (torch, transformers): a model LF loads it in the
# process that votes, so that unpickling an LF (every Ray worker does) stays light.
LOCAL_IMPORTS |= {"ray", "mtl.checkpoint", "torch"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """The mtl modules ``path`` imports at module level, and every import made inside a function."""
    tree = ast.parse(path.read_text())
    edges: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtl"):
            # ``from mtl.weak import lf`` names a submodule; ``from mtl.weak import load_lfs`` the package
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            edges |= subs or {node.module}
    local = [
        f"line {n.lineno}: {ast.unparse(n)}"
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.Import | ast.ImportFrom)
        and not any((getattr(n, "module", None) or n.names[0].name).startswith(m) for m in LOCAL_IMPORTS)
    ]
    return edges, local


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, set(modules))[0] for m, p in modules.items()}


def test_every_module_has_a_layer() -> None:
    placed = [m for _, mods in LAYERS for m in mods]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    assert set(placed) == set(_modules())


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n) :], n] if n in path else [m, n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


def test_imports_point_down_the_layers() -> None:
    layer = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
    up = [
        f"{m} ({LAYERS[layer[m]][0]}) imports {n} ({LAYERS[layer[n]][0]})"
        for m, deps in _graph().items()
        for n in deps
        if layer[n] > layer[m]
    ]
    assert not up, "imports pointing up the layers:\n" + "\n".join(up)


def test_no_imports_hidden_in_functions() -> None:
    modules = _modules()
    hidden = {m: local for m, p in modules.items() if (local := _imports(p, set(modules))[1])}
    assert not hidden, f"imports inside functions (move them to the top): {hidden}"


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The graph reader itself: a planted cycle and a planted function-local import are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from mtl.b import x\n")
    b.write_text("import mtl.a\ndef f():\n    import json\n")
    known = {"mtl.a", "mtl.b"}
    assert _imports(a, known)[0] == {"mtl.b"}
    edges, local = _imports(b, known)
    assert edges == {"mtl.a"} and local == ["line 3: import json"]
    assert _cycles({"mtl.a": {"mtl.b"}, "mtl.b": {"mtl.a"}}) == [["mtl.a", "mtl.b", "mtl.a"]]
    assert _cycles({"mtl.a": {"mtl.b"}, "mtl.b": set()}) == []
