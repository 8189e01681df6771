"""The package's shape (docs/architecture.md): no import cycle between its modules, and the
Qt-free layers (io, preprocessing, engine, cli) load no napari or Qt."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import napari_imc_vae

PACKAGE = Path(napari_imc_vae.__file__).parent
ROOT = "napari_imc_vae"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package's modules it imports, at the top, inside functions or for type checking only.

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
    """
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "napari_imc_vae"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "a.py").write_text("from napari_imc_vae.engine.b import thing\n")
    (pkg / "engine" / "b.py").write_text("def thing():\n    from napari_imc_vae.engine import a\n")
    (pkg / "engine" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                         "    from napari_imc_vae.engine.a import x\n")
    graph = import_graph(pkg)
    assert graph["napari_imc_vae.engine.c"] == {"napari_imc_vae.engine.a"}  # a type-only import is an edge too
    assert cycles(graph) == [["napari_imc_vae.engine.a", "napari_imc_vae.engine.b"]]


def test_no_module_of_the_package_imports_itself_back():
    graph = import_graph()
    assert len(graph) > 50 and "napari_imc_vae.engine.data.pool" in graph["napari_imc_vae.engine.data.cohort"]
    assert cycles(graph) == []


def test_io_preprocessing_engine_and_cli_load_no_napari_or_qt():
    modules = sorted(m for m in import_graph()
                     if m.split(".")[1:2] and m.split(".")[1] in ("io", "preprocessing", "engine", "cli"))
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(modules) > 40 and "napari_imc_vae.engine.training.use_case" in modules
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_engine_package_and_its_defaults_load_no_torch():
    code = ("import sys, napari_imc_vae.engine, napari_imc_vae.engine.defaults, napari_imc_vae.engine.training\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


#: What stays at the top of the engine, beside its rooms (docs/architecture.md): devices, defaults and
#: the allocator setting. A new module goes into a room.
ENGINE_TOP = {"__init__", "device", "defaults", "memory"}
ENGINE_ROOMS = {"training", "model", "data", "apply", "quality", "cells", "bmz", "model_file"}
LINE_LIMIT = 400


def test_the_engine_is_rooms_and_a_few_top_modules():
    engine = PACKAGE / "engine"
    rooms = {p.name for p in engine.iterdir() if (p / "__init__.py").is_file()}
    top = {p.stem for p in engine.glob("*.py")}
    assert rooms == ENGINE_ROOMS
    assert top - ENGINE_TOP == set(), "a flat engine module: put it in a room (docs/architecture.md)"


def test_the_rooms_and_the_numpy_only_modules_load_no_torch():
    modules = [f"{ROOT}.engine.{room}" for room in sorted(ENGINE_ROOMS)] + [
        f"{ROOT}.engine.model_file.schema", f"{ROOT}.engine.apply.tiling", f"{ROOT}.engine.data.cohort",
        f"{ROOT}.engine.data.content", f"{ROOT}.engine.defaults"]
    code = f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_no_module_is_over_the_line_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 100
    assert {path: n for path, n in sizes.items() if n > LINE_LIMIT} == {}


def test_dependencies_point_one_way_between_layers():
    """_napari and cli → engine → preprocessing → io; the CLI and the widgets never import each other."""
    allowed = {"io": {"io"}, "preprocessing": {"preprocessing", "io"},
               "engine": {"engine", "preprocessing", "io"},
               "cli": {"cli", "engine", "preprocessing", "io"},
               "_napari": {"_napari", "engine", "preprocessing", "io"}}
    graph = import_graph()
    wrong = sorted((m, d) for m, deps in graph.items() for d in deps
                   if m.count(".") >= 2 and d.count(".") >= 1 and m.split(".")[1] in allowed
                   and d.split(".")[1] in allowed and d.split(".")[1] not in allowed[m.split(".")[1]])
    assert wrong == []
