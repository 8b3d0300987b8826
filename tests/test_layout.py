"""The layout's contracts: dvc.yaml deps cover every module a stage imports; stages never import stages.

A stage's code is the transitive closure of the project modules its entry module imports (every
``import`` statement anywhere in a file, package ``__init__`` files included, docstring-only ones
aside), plus the model modules the registry imports by name when a model is built. Editing any file
in that closure must rerun the stage, so each one has to be a dep (itself, or a folder above it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGES = ("interir", "baselines", "pipelines")


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _package_of(path: Path) -> list[str]:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts[:-1]


def imported_modules(path: Path) -> set[Path]:
    """Project files ``path`` imports, directly, with their parent packages."""
    out: set[Path] = set()
    tree = ast.parse(path.read_text())
    pkg = _package_of(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg[: len(pkg) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for i in range(1, len(parts) + 1):
                f = _module_file(".".join(parts[:i]))
                if f is not None:
                    out.add(f)
    return out


def _registry_modules() -> set[Path]:
    """The model modules ``interir.registry`` imports by name (``_MODEL_MODULES``)."""
    from interir import registry

    return {_module_file(m) for m in registry._MODEL_MODULES} - {None}


def closure(entry: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [entry]
    registry = REPO / "interir" / "registry.py"
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += imported_modules(f)
        if f == registry:
            todo += _registry_modules()
    return seen


def _is_marker(path: Path) -> bool:
    """A package ``__init__`` holding only a docstring changes nothing when imported."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                              for n in body)


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _entry_module(cmd: str) -> Path:
    m = re.search(r"python -m (pipelines\.stages\.\w+)", cmd)
    assert m, f"stage command does not run a pipelines.stages module: {cmd}"
    f = _module_file(m.group(1))
    assert f is not None, m.group(1)
    return f


def _dep_paths(stage: dict) -> list[Path]:
    deps = []
    for d in stage.get("deps", []):
        d = str(d)
        if "${" in d:  # matrix outputs of other stages (results/train/${item.model}...)
            continue
        deps.append(REPO / d)
    return deps


@pytest.mark.parametrize("name", sorted(_stages()))
def test_dvc_deps_cover_every_imported_module(name: str) -> None:
    stage = _stages()[name]
    deps = _dep_paths(stage)
    needed = sorted(f for f in closure(_entry_module(stage["cmd"])) if not _is_marker(f))
    missing = [f.relative_to(REPO).as_posix() for f in needed if not any(f == d or d in f.parents for d in deps)]
    assert not missing, f"dvc.yaml stage {name!r} lacks deps: {missing}"


@pytest.mark.parametrize("name", sorted(_stages()))
def test_dvc_code_deps_exist(name: str) -> None:
    for d in _dep_paths(_stages()[name]):
        rel = d.relative_to(REPO).as_posix()
        if rel.startswith(("datasets/", "results/")):
            continue  # outputs of other stages
        assert d.exists(), f"dvc.yaml stage {name!r} depends on {rel}, which does not exist"


def test_stages_never_import_stages_or_commands() -> None:
    stages_dir = REPO / "pipelines" / "stages"
    bad = []
    for f in sorted((REPO / "pipelines").rglob("*.py")):
        if f.name == "cli.py" and f.parent == REPO / "pipelines":
            continue  # the dispatcher names every subcommand
        for g in imported_modules(f):
            in_stages = stages_dir in g.parents and g.name != "__init__.py"
            in_commands = REPO / "pipelines" / "commands" in g.parents and g.name != "__init__.py"
            if (in_stages or in_commands) and g != f:
                bad.append(f"{f.relative_to(REPO)} imports {g.relative_to(REPO)}")
    assert not bad, bad


def test_library_never_imports_the_pipeline() -> None:
    """Model code (interir/, baselines/) stands alone: it never imports the harness."""
    bad = [f"{f.relative_to(REPO)} imports {g.relative_to(REPO)}"
           for pkg in ("interir", "baselines") for f in sorted((REPO / pkg).rglob("*.py"))
           for g in imported_modules(f) if (REPO / "pipelines") in g.parents]
    assert not bad, bad


def test_paths_module_and_dvc_yaml_agree() -> None:
    """dvc.yaml cannot import pipelines.common.paths: its spelled-out paths must match it."""
    from pipelines.common import paths

    text = (REPO / "dvc.yaml").read_text()
    for p in (paths.DATA_DIR, paths.TRAIN_DIR, paths.EVAL_DIR, paths.CKPT_DIR, paths.PROFILE_JSON, paths.REPORT_DIR):
        assert p.as_posix() in text, f"{p} (pipelines/common/paths.py) not in dvc.yaml"
    for name in (paths.MODEL_FILE, paths.PER_IMAGE):
        assert f"/{name}" in text, name


def test_closure_sees_the_registry_models() -> None:
    """The deps check follows the registry's by-name imports (else model edits would not retrain)."""
    train = closure(REPO / "pipelines" / "stages" / "train.py")
    assert REPO / "baselines" / "fdtanet.py" in train
    synth = closure(REPO / "pipelines" / "stages" / "synthesize.py")
    assert REPO / "interir" / "model.py" not in synth


def test_every_output_persists() -> None:
    """DVC deletes a stage's outputs before its command runs unless they are persist: true; every stage here
    replaces its outputs atomically once it has succeeded, so a failed or killed run keeps the previous ones
    (docs/robustness.md; the workflow test runs failing experiments)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                assert opts.get("persist") is True, f"{name}: {kind} {path} is not persist: true"
