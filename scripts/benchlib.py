"""What the benchmark scripts share: how to run this checkout's nsinspect as an installed one runs.

An installed nsinspect has its bytecode compiled (pip does it) and, where a compiler was found,
the scan's C speed-up built.  ``prepare`` does both in this checkout (``__pycache__`` and the
``.so`` are ignored by git), then ``command`` runs it exactly as the console script does
(``from nsinspect.cli import main``), whatever copy of nsinspect the interpreter has installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The body of the console script pip writes for `nsinspect = "nsinspect.entry:main"`.
CONSOLE_SCRIPT = "import re, sys; from nsinspect.entry import main; sys.exit(main())"


def prepare(pure: bool = False) -> str:
    """Compile this checkout's bytecode and (unless ``pure``) build the C speed-up in place.
    Returns which scan loop the runs will use."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "nsinspect")], check=True, stdout=subprocess.DEVNULL)
    if not pure:
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = "from nsinspect.node import procfs; print('C (nsinspect/node/_scan.c)' if procfs._c else 'pure Python')"
    return subprocess.run([sys.executable, "-c", code], env=env(pure), cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def env(pure: bool = False) -> dict[str, str]:
    """The environment of a run: this checkout first on the path; PYTHONDONTWRITEBYTECODE is kept,
    the bytecode being compiled beforehand."""
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    e["NSINSPECT_PURE_PYTHON"] = "1" if pure else ""
    return e


def command() -> list[str]:
    """nsinspect as its console script starts it (run with ``env()``)."""
    return [sys.executable, "-c", CONSOLE_SCRIPT]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
