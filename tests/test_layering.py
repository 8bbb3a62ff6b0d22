"""One import direction (DESIGN.md): tasks <- lab <- probes <- app, with lab/cli.py the only module that reaches up
(lazily, inside its sub-commands), and no circle among our modules. Every import counts, a lazy one inside a
function included: the graph is read from the source, not from what happens to be imported."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FLOORS = ["tasks", "lab", "probes", "app"]  # each may import only the floors before it
REACHES_UP = {"lab.cli"}  # the outermost shell


def _modules() -> dict[str, Path]:
    mods = {}
    for floor in FLOORS:
        for path in (ROOT / floor).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


MODULES = _modules()


def _ours(name: str) -> str | None:
    """The module of ours that `name` (a module, or a module's attribute) lives in, or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Our modules that `module` imports anywhere in its source."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            names = [f"{base}.{a.name}" for a in node.names]  # `from pkg import mod` imports pkg.mod
        else:
            continue
        found |= {m for m in map(_ours, names) if m and m != module}
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_reader_of_the_graph_sees_lazy_and_relative_imports():
    """The check below is only as good as this reader: a known lazy import, a known relative one."""
    assert "probes.sweeps" in GRAPH["lab.cli"]  # inside cmd_sweep
    assert {"lab.config", "lab.hooks", "lab.stacked"} <= GRAPH["lab.model"]
    assert "probes.experiments.common" in GRAPH["probes.experiments"]


@pytest.mark.parametrize("floor", FLOORS)
def test_imports_point_down_the_floors_only(floor):
    allowed = set(FLOORS[:FLOORS.index(floor) + 1])
    upward = sorted(f"{m} -> {d}" for m in GRAPH if m.split(".")[0] == floor and m not in REACHES_UP
                    for d in GRAPH[m] if d.split(".")[0] not in allowed)
    assert not upward, f"imports against tasks <- lab <- probes <- app: {upward}"


def _circle() -> list[str] | None:
    """One circle of imports, as the path that closes it, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]):
        state[m] = 1
        for d in sorted(GRAPH[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d, path + [d])):
                return found
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_no_module_imports_itself_through_others():
    circle = _circle()
    assert circle is None, "an import circle: " + " -> ".join(circle)


def test_a_circle_is_found_where_there_is_one():
    """The search finds a circle when one is put in (the reader must not pass by being blind)."""
    GRAPH["lab.stacked"].add("lab.model")
    try:
        assert _circle() is not None
    finally:
        GRAPH["lab.stacked"].discard("lab.model")
