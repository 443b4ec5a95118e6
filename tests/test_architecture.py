"""The package's import graph: no cycle, and the model organism plugs in only through the
provider registry (nothing else imports it, so another provider could take its place)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sdlab"
# The registry loads providers; the `sdlab organism` command group is the organism's own CLI.
MAY_IMPORT_ORGANISM = {"sdlab.providers", "sdlab.cli.organism"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every sdlab module `path` imports, at module level or inside a function (a deferred
    import is still a dependency); `from pkg import name` counts `pkg.name` when it is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:  # importing a.b.c runs a/__init__ and a/b/__init__ first
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return {target for target in found if target in modules and target != name and not name.startswith(target + ".")}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30, "the walk found the package"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_only_the_provider_registry_imports_the_organism():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if not module.startswith("sdlab.organism") and module not in MAY_IMPORT_ORGANISM
        for target in targets
        if target.startswith("sdlab.organism")
    )
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["sdlab.core.stats", "sdlab.core.problem", "sdlab.core.grading", "sdlab.config", "sdlab.report.page"])
def test_light_modules_do_not_reach_torch(module):
    """Statistics, problems, grading and configs load without torch: `sdlab report` and
    `sdlab validate` need none of it."""
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0, f"{module} imports torch"


class ToyProvider:
    """A second provider, as a plug-in would register one: problems `toy:N`, no model."""

    name = "toy"
    model_options = ()

    def load_problems(self, spec):
        from sdlab.core.problem import Problem

        return [Problem.from_question(f"toy-{i}", f"What is {i} + 1?", str(i + 1), source="toy") for i in range(int(spec.split(":")[1]))]

    def check_spec(self, spec):
        from sdlab import SdlabError

        if not spec.split(":")[1].isdigit():
            raise SdlabError(f"toy spec {spec!r}: write toy:N")

    def model_dir(self, **options):
        raise NotImplementedError

    def build_record(self, model_dir):
        return {}

    def trained_window(self, model_dir):
        return None

    def missing_abilities(self, model_dir):
        return []


TOY = ToyProvider()


def test_a_provider_registered_as_an_entry_point_serves_data_and_validation(monkeypatch, tmp_path):
    from importlib.metadata import EntryPoint

    from sdlab import SdlabError, providers
    from sdlab.config import build_config
    from sdlab.config.checks import check_paths
    from sdlab.config.schema import TrainConfig
    from sdlab.core.data import load_problems

    point = EntryPoint(name="toy", value="tests.test_architecture:TOY", group=providers.ENTRY_POINT_GROUP)
    monkeypatch.setattr(providers, "entry_points", lambda group: [point] if group == providers.ENTRY_POINT_GROUP else [])
    providers.providers.cache_clear()
    try:
        assert [p.answer for p in load_problems("toy:3")] == ["1", "2", "3"]
        assert len(load_problems("organism:linmod:2")) == 2  # the shipped provider still answers
        config = build_config(TrainConfig, {"method": "grpo", "output_dir": str(tmp_path / "run"), "data": {"train": "toy:x"}})
        with pytest.raises(SdlabError, match=r"data.train: toy spec 'toy:x': write toy:N"):
            check_paths(config)
    finally:
        providers.providers.cache_clear()
