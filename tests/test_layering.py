"""Layering: a domain package never imports another domain (DESIGN.md, "Layout").

Every module of each domain package (found on disk, sub-packages included) is imported in a fresh
interpreter; afterwards ``sys.modules`` must hold no module of another domain. The child process
reports, for each foreign domain it finds, the first module whose import brought it in, so a
failure names the culprit. Imports inside functions (run only when called) escape that check, so
the source of every module is also parsed and each ``import`` / ``from ... import`` statement,
wherever it stands, is resolved to an absolute module name and checked.

Shared code belongs in :mod:`stacklab.core` (kernels), ``io``, ``engine`` or ``backend``; code
that composes domains belongs in :mod:`stacklab.cli` or :mod:`stacklab.compat`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import stacklab

DOMAINS = ("speckle", "beads", "stem4d", "ptycho", "smlm")
PACKAGE_DIR = Path(stacklab.__file__).resolve().parent

# Imports every module given on the command line, in order; after each one, looks for modules of
# the foreign domains in sys.modules and records the module that first brought each one in.
_CHILD = """
import importlib, json, sys
domain, modules = sys.argv[1], sys.argv[2:]
foreign = [d for d in {domains!r} if d != domain]

def present():
    found = set()
    for name in list(sys.modules):
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "stacklab" and parts[1] in foreign:
            found.add(parts[1])
    return found

culprits, errors = {{}}, {{}}
for module in modules:
    try:
        importlib.import_module(module)
    except Exception as exc:
        errors[module] = f"{{type(exc).__name__}}: {{exc}}"
    for other in sorted(present() - set(culprits)):
        culprits[other] = module
print(json.dumps({{"culprits": culprits, "errors": errors}}))
"""


def _modules(domain: str) -> list[str]:
    """Dotted names of the package and every module under it (from the file tree)."""
    root = PACKAGE_DIR / domain
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_module_discovery_finds_subpackages():
    """The scan sees nested modules, so the layering check below covers the whole package."""
    names = _modules("stem4d")
    assert names[0] == "stacklab.stem4d"
    assert "stacklab.stem4d.origin" in names
    assert "stacklab.stem4d.readers.mib" in names
    assert all(n.startswith("stacklab.stem4d") for n in names)


def test_child_reports_a_foreign_import():
    """The child detects a foreign domain (here: importing stacklab.beads while checking smlm),
    so the layering test can fail."""
    code = _CHILD.format(domains=DOMAINS)
    res = subprocess.run(
        [sys.executable, "-c", code, "smlm", "stacklab.beads"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["culprits"] == {"beads": "stacklab.beads"}


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_imports_no_other_domain(domain):
    modules = _modules(domain)
    assert len(modules) > 1, f"no modules found for stacklab.{domain}"
    code = _CHILD.format(domains=DOMAINS)
    res = subprocess.run(
        [sys.executable, "-c", code, domain, *modules],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{domain}: {len(modules)} modules imported; foreign domains: {report['culprits']}")
    assert report["errors"] == {}, f"modules of stacklab.{domain} failed to import"
    assert report["culprits"] == {}, (
        f"stacklab.{domain} imports other domains (domain: first module that pulled it in): "
        f"{report['culprits']}"
    )


def _imported_names(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path``, nested ones included.

    ``from . import x`` yields ``package.x`` (x may be a module), so sibling-module imports are
    resolved too.
    """
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - (node.level - 1)] if node.level else []
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:
                found += [(node.lineno, ".".join([*base, alias.name])) for alias in node.names]
    return found


def _foreign(name: str, domain: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "stacklab" and parts[1] in DOMAINS and parts[1] != domain


def test_import_resolution_catches_relative_and_nested_imports(tmp_path):
    """A lazy, relative import of another domain inside a function is found."""
    src = tmp_path / "prepare.py"
    src.write_text(
        "from .geometry import x\n"
        "def f():\n"
        "    from ..stem4d.origin import find_origin\n"
        "    from .. import smlm\n"
        "    import stacklab.beads.track\n"
    )
    names = sorted(_imported_names(src, "stacklab.ptycho.prepare"))
    assert names == [
        (1, "stacklab.ptycho.geometry"),
        (3, "stacklab.stem4d.origin"),
        (4, "stacklab.smlm"),
        (5, "stacklab.beads.track"),
    ]
    assert [n for _, n in names if _foreign(n, "ptycho")] == [
        "stacklab.stem4d.origin",
        "stacklab.smlm",
        "stacklab.beads.track",
    ]


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_source_imports_no_other_domain(domain):
    """No import statement of a domain module, at any depth, names another domain."""
    bad = []
    for module in _modules(domain):
        rel = Path(*module.split(".")[1:])
        path = PACKAGE_DIR / rel / "__init__.py"
        if not path.exists():
            path = (PACKAGE_DIR / rel).with_suffix(".py")
        bad += [
            f"{module}:{line} imports {name}"
            for line, name in sorted(_imported_names(path, module))
            if _foreign(name, domain)
        ]
    assert bad == [], "\n".join(bad)
