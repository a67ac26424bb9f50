"""The package's architecture, checked from its source: no import cycles, and imports flow
down the layers (foundations, models, training, evaluation, experiments, cli). Every import
counts, also those inside functions: a lazy import hides a cycle, it does not remove it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "s2ssm"

#: Layers, bottom first; a module may import its own layer and those below it. Modules not
#: listed (errors, files, config, graph, testing, sim, triton_kernels, nn, _core) are the
#: foundations, layer 0.
LAYERS = {
    "s2ssm.models": 1,
    "s2ssm.training": 2,
    "s2ssm.evaluation": 3,
    "s2ssm.experiments": 4,
    "s2ssm.cli": 5,
    "s2ssm.__main__": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules ``name`` (at ``path``) imports, anywhere in its body: for
    ``from a.b import c`` the module ``a.b.c`` if there is one, else ``a.b``; and every package
    above an imported module (Python runs their ``__init__`` first), except packages above
    ``name`` itself (being imported already) and the root package."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                targets.add(full if full in known else source)
    own_parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    found: set[str] = set()
    for target in targets:
        if not (target == "s2ssm" or target.startswith("s2ssm.")):
            continue
        while target not in known and "." in target:  # an attribute of a module
            target = target.rpartition(".")[0]
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return {m for m in found if m in known and m != name and m not in own_parents}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(path, name, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(name: str) -> int:
    for prefix, rank in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return 0


def test_the_checker_sees_imports_and_cycles(tmp_path: Path) -> None:
    # the checker itself, on a graph and on sources it must read correctly
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "import s2ssm.training.trainer\n"
        "def f():\n    from s2ssm.models import vae\n    from s2ssm import graph\n"
        "from s2ssm.training.data import SequenceSet\n",
        encoding="utf-8",
    )
    known = {"s2ssm", "s2ssm.graph", "s2ssm.models", "s2ssm.models.vae", "s2ssm.training"}
    known |= {"s2ssm.training.trainer", "s2ssm.training.data", "s2ssm.experiments.x"}
    assert imported(source, "s2ssm.experiments.x", known) == {
        "s2ssm.graph",
        "s2ssm.models",
        "s2ssm.models.vae",
        "s2ssm.training",
        "s2ssm.training.data",
        "s2ssm.training.trainer",
    }


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "s2ssm.models.world_model" in graph
    assert "s2ssm.models.blocks" in graph["s2ssm.models.world_model"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_flow_down_the_layers() -> None:
    upward = sorted(
        f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        for name, deps in import_graph().items()
        for dep in deps
        if layer(dep) > layer(name)
    )
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # the generic run directory knows nothing about models, training or the protocol
        ("s2ssm.experiments.rundir", {"s2ssm.errors", "s2ssm.files", "s2ssm.progress"}),
        # the foundations import only foundations (no torch-level package)
        ("s2ssm.config", {"s2ssm.errors"}),
        ("s2ssm.files", set()),
        ("s2ssm.progress", set()),
    ],
)
def test_leaf_modules_stay_leaves(module: str, allowed: set[str]) -> None:
    assert import_graph()[module] <= allowed


def test_the_command_line_lives_in_one_package() -> None:
    # argparse is the command line's business only
    users = {
        name
        for name, path in modules().items()
        if "argparse" in path.read_text(encoding="utf-8") and layer(name) < LAYERS["s2ssm.cli"]
    }
    assert not users, sorted(users)
