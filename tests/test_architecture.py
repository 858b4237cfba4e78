"""The layout docs/architecture.md draws is the layout the package has."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "activezarr"
# Which top-level parts may not import which: the arrows of docs/architecture.md.
FORBIDDEN = {
    "reduction": {"active", "catalog", "cli", "xarray", "backends", "index"},
    "index": {"active", "catalog", "cli", "xarray", "backends"},
    "backends": {"active", "catalog", "cli", "xarray"},
    "catalog": {"cli", "xarray"},
    "xarray": {"cli"},
    "active": {"cli", "xarray"},  # catalog.single only, when given a source file
}


def _modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _imports(path: pathlib.Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [f"{name}.{alias.name}" for alias in node.names] if not node.module else [name]
            found.update(n for n in names if n.startswith("activezarr."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("activezarr."))
    return found


def test_every_module_is_on_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = [
        str(p.relative_to(ROOT)) for p in _modules() if f"`{p.relative_to(ROOT)}`" not in page
    ]
    missing = [m for m in missing if not m.endswith(("backends/__init__.py", "index/__init__.py"))]
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_imports_point_the_way_the_page_says():
    wrong = []
    for path in _modules():
        here = _part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in _imports(path):
            if _part(target) in FORBIDDEN.get(here, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, wrong
