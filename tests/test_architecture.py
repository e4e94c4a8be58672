"""The package's shape, read from its source: imports follow the layers of
docs/architecture.md with no cycle, and modules and functions stay a size a reader can hold.

Layers, bottom to top (a module imports only from its own layer or below):

0. contract and config: the wire format, the feature layout, the config, schedules, and the
   small shared pieces every part uses (interfaces, supervision, bookkeeping);
1. components: the simulator, the network, replay, the learner, inference, the game server, the
   frame sources, checkpoints, operator settings, the multi-process agreement;
2. the run: training, evaluation, and what watches or drives a run (dashboard, keyboard,
   clients);
3. the command line and the benches.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tempest_jax"

LAYERS = {
    0: ["tempest_jax", "tempest_jax.config", "tempest_jax.features", "tempest_jax.protocol",
        "tempest_jax.schedules", "tempest_jax.policy", "tempest_jax.supervisor",
        "tempest_jax.rundir", "tempest_jax.metrics", "tempest_jax.hostmem"],
    1: ["tempest_jax.sim*", "tempest_jax.networks", "tempest_jax.replay*",
        "tempest_jax.learner", "tempest_jax.distributed", "tempest_jax.checkpoint",
        "tempest_jax.actor", "tempest_jax.server", "tempest_jax.control",
        "tempest_jax.coordinator", "tempest_jax.sources", "tempest_jax.render",
        "tempest_jax.gameview"],
    2: ["tempest_jax.train", "tempest_jax.learning", "tempest_jax.saving", "tempest_jax.resume",
        "tempest_jax.evaluate", "tempest_jax.dashboard", "tempest_jax.keyboard",
        "tempest_jax.clients", "tempest_jax.simclient", "tempest_jax.plots", "tempest_jax.video",
        "tempest_jax.observers", "tempest_jax.trackers"],
    3: ["tempest_jax.cli", "tempest_jax.commands*", "tempest_jax.bench*"],
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_TRAIN_LINES = 250
# The simulator's game logic is one long sequence of rules: exempt from the size limits.
SIZE_EXEMPT = ("tempest_jax.sim",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    for layer, patterns in LAYERS.items():
        for pattern in patterns:
            if module == pattern.rstrip("*") or (
                    pattern.endswith("*") and module.startswith(pattern[:-1] + ".")):
                return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports anywhere in its source (lazy imports
    included). `from pkg import sub` names the submodule, not the package."""
    found = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_follow_the_layers():
    upward = sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                    for a, targets in GRAPH.items() for b in targets
                    if layer_of(b) > layer_of(a))
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that returns to its start), or None."""
    state: dict[str, int] = collections.defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                return [*path[path.index(nxt):], nxt]
            if state[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith(SIZE_EXEMPT)))
def test_modules_and_functions_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    limit = MAX_TRAIN_LINES if module == "tempest_jax.train" else MAX_MODULE_LINES
    assert lines <= limit, f"{module} has {lines} lines (at most {limit})"
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(TREES[module])
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: " + ", ".join(long)
