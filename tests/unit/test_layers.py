"""The layers that never load a model (planning, analysis, judging, the report and their commands)
import neither torch nor transformers: each module, imported alone in a fresh interpreter, leaves
both out of ``sys.modules``. A failure names the module and the chain of imports that pulled one in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lite

HEAVY = ("torch", "transformers")
PACKAGE = Path(lite.__file__).parent
COMMANDS = [
    "judge",
    "figure",
    "table",
    "align",
    "thresholds",
    "similarity",
    "annotate",
    "table5",
    "plan_cost",
]


def _with_submodules(package: str) -> list[str]:
    path = PACKAGE.joinpath(*package.split(".")[1:])
    return [package, *(f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)]))]


MODULES = [
    "lite.plan",
    "lite.jobs",  # the rules' input and params functions
    "lite.decoders.names",  # the Snakefile's decoder names
    "lite.decoders.specs",
    "lite.sections",
    "lite.analysis",
    "lite.io",
    *_with_submodules("lite.judge"),
    *_with_submodules("lite.report"),
    *(f"lite.commands.{name}" for name in COMMANDS),
]

# Runs in the fresh interpreter: a finder ahead of all others notes, for the first import of each
# heavy package, which modules were being executed at that moment (outermost first), then lets
# the normal finders do the import.
WATCH = """
import importlib, json, sys

HEAVY, chains = {heavy!r}, {{}}


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in chains:
            frame, chain = sys._getframe(1), []
            while frame is not None:
                if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
                    chain.append(frame.f_globals["__name__"])
                frame = frame.f_back
            chains[top] = [*reversed(chain), name]
        return None


sys.meta_path.insert(0, Watch())
importlib.import_module({module!r})
print(json.dumps({{top: chains.get(top, []) for top in HEAVY if top in sys.modules}}))
"""


@pytest.mark.parametrize("module", MODULES)
def test_module_loads_no_model_library(module):
    code = WATCH.format(heavy=HEAVY, module=module)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert not loaded, "; ".join(
        f"importing {module} loads {top}: {' -> '.join(chain)}" for top, chain in loaded.items()
    )
