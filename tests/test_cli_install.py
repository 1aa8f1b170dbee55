"""A plain ``pip install modelminder`` (no extras) brings everything the package imports, so
commands like ``minder stream --url`` do not depend on what the dev extra happened to install."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

SRC = Path(__file__).resolve().parents[1] / "src" / "modelminder"
# Imported only on a path that says it needs the extra (`minder train --estimator mlp`).
EXTRA_ONLY = {"torch": "torch"}
HTTP_CLIENTS = {"httpx", "httpx2", "requests", "aiohttp", "urllib3", "pycurl"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def _runtime_requirements(dist: str) -> list[Requirement]:
    """``dist``'s requirements that hold without any extra."""
    found = []
    for text in md.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(req)
    return found


def _installed_by_plain_install() -> set[str]:
    """The distributions a plain install of modelminder brings, transitively (requirements
    for another platform or Python are left out by their markers)."""
    seen: set[str] = set()
    todo = [r.name for r in _runtime_requirements("modelminder")]
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        todo += [r.name for r in _runtime_requirements(name)]
    return seen


def _imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in src (function-local imports too)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "modelminder":
                    found.setdefault(top, set()).add(str(path.relative_to(SRC)))
    return found


def test_the_http_client_is_a_runtime_requirement() -> None:
    plain = {_name(r.name) for r in _runtime_requirements("modelminder")}
    assert "httpx2" in plain, md.requires("modelminder")


def test_a_plain_install_brings_every_module_the_package_imports() -> None:
    installed = _installed_by_plain_install()
    by_module = md.packages_distributions()
    missing = {}
    for module, files in _imported_modules().items():
        dists = {_name(d) for d in by_module.get(module, [module])}
        if not dists & installed and module not in EXTRA_ONLY:
            missing[module] = sorted(files)
    assert not missing, f"imported but not brought by `pip install modelminder`: {missing}"
    extras = md.metadata("modelminder").get_all("Provides-Extra") or []
    assert set(EXTRA_ONLY.values()) <= set(extras)


def test_the_package_uses_one_http_client() -> None:
    clients = set(_imported_modules()) & HTTP_CLIENTS
    assert clients == {"httpx2"}, clients
