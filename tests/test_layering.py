"""Layering: the protocol package is what a live node runs, so it must load without the simulator, the learning
stack (torch) or the experiment config, and no file in it may import them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parent.parent / "src" / "plexus" / "protocol"
FORBIDDEN = ("plexus.config", "plexus.sim", "plexus.learning", "plexus.metrics", "plexus.commands", "plexus.cli",
             "plexus.studies", "torch")


def test_the_protocol_and_its_registry_load_without_the_simulator_or_torch() -> None:
    script = (
        "import json, sys\n"
        "import plexus.protocol, plexus.protocol.plexus, plexus.protocol.registry as registry\n"
        "names = sorted(registry.algorithms())\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('plexus', 'torch'))\n"
        "print(json.dumps({'algorithms': names, 'modules': loaded}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"plexus", "fedavg", "dpsgd", "gossip", "el-local", "el-oracle"} <= set(report["algorithms"])
    offending = [m for m in report["modules"] if m.startswith(FORBIDDEN)]
    assert offending == []


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "plexus.protocol" if node.level == 1 else "plexus"
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_protocol_file_imports_the_config_the_simulator_or_torch() -> None:
    files = sorted(PROTOCOL.glob("*.py"))
    assert len(files) >= 10
    offending = {}
    for path in files:
        found = sorted(name for name in imported_modules(path)
                       if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))
        if found:
            offending[path.name] = found
    assert offending == {}


def test_the_import_scanner_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from plexus.config import Config\n    import torch.nn\n")
    assert {"plexus.config", "torch.nn"} <= imported_modules(sample)
