"""Packaging: every third-party module the code imports comes from a distribution that pyproject.toml
declares, and every declared distribution is pinned in constraints.txt (the only place with versions)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import pytest

from tests.conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGES = ("interir", "baselines", "pipelines")


def _normalise(name: str) -> str:
    """PEP 503 name: case and runs of ``-_.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))


def declared() -> dict[str, str]:
    """``pyproject.toml`` ``[project] dependencies``: normalised name -> requirement string."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_requirement_name(r): r for r in project["dependencies"]}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it, for every import anywhere in a file (inside functions too:
    the code imports heavy packages lazily), leaving out the standard library and the project's own
    packages."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES:
                        continue
                    found.setdefault(top, set()).add(path.relative_to(REPO).as_posix())
    return found


def test_the_import_walk_sees_lazy_imports() -> None:
    """scipy is imported inside a function only; a walk of module-level imports would miss it."""
    found = third_party_imports()
    assert {"torch", "numpy", "scipy"} <= set(found), sorted(found)


def test_every_imported_package_is_declared() -> None:
    deps = declared()
    providers = importlib.metadata.packages_distributions()
    bad = []
    for module, files in sorted(third_party_imports().items()):
        dists = providers.get(module)
        where = ", ".join(sorted(files))
        if not dists:
            bad.append(f"{module} (imported by {where}) is not provided by any installed distribution")
        elif not any(_normalise(d) in deps for d in dists):
            bad.append(f"{module} (imported by {where}) comes from {' or '.join(sorted(set(dists)))}, "
                       "which pyproject.toml [project] dependencies does not declare")
    assert not bad, "\n".join(bad)


def test_versions_are_pinned_in_constraints_only() -> None:
    """pyproject.toml gives ranges at most; constraints.txt pins every declared distribution."""
    deps = declared()
    pinned_in_pyproject = [r for r in deps.values() if "==" in r]
    assert not pinned_in_pyproject, f"pin versions in constraints.txt, not in pyproject.toml: {pinned_in_pyproject}"
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name)] = version.strip()
    missing = sorted(set(deps) - set(pins))
    assert not missing, f"declared in pyproject.toml but not pinned in constraints.txt: {missing}"
