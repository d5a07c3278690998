"""``--help`` answered by the console scripts' entry module from generated texts (nsinspect/_help.py):
byte for byte what click writes, at every width, in a pipe and in a terminal, without importing click."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from helpers import read_pty

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_help  # noqa: E402

from nsinspect import _help  # noqa: E402

CLICK = "import sys; from nsinspect.cli import main, kubectl_main; (kubectl_main if sys.argv[1] == 'k' else main)({}) "
ENTRY = {"nsinspect": "from nsinspect.entry import main; main()",
         "kubectl nsinspect": "from nsinspect.entry import kubectl_main; kubectl_main()"}


def run(code: str, args: list[str], columns: int | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)


def by_click(prog: str, args: list[str], columns: int | None) -> str:
    """What click writes (the command line called directly, never the entry module)."""
    code = ("import sys; from nsinspect.cli import main; "
            f"main(sys.argv[1:], prog_name={prog!r}, kubectl={prog != 'nsinspect'})")
    r = run(code, args, columns)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return r.stdout


def test_generated_texts_are_what_click_writes_now():
    """The drift check: every stored text rendered again by the real command line (scripts/gen_help.py)."""
    assert _help.TEXTS == gen_help.texts()
    assert set(_help.WIDTHS) == set(gen_help.COLUMNS_FOR)
    assert {c for _p, c, _w in _help.TEXTS} >= {"", "node", "pod", "pods", "check", "pid", "deploy", "agent"}


@pytest.mark.parametrize("prog", ["nsinspect", "kubectl nsinspect"])
@pytest.mark.parametrize("args", [["--help"], ["-h"], ["pod", "--help"], ["check", "-h"]])
@pytest.mark.parametrize("columns", [None, 102, 250, 90, 40, "junk"])
def test_entry_writes_what_click_writes(prog, args, columns):
    """Through the console script's entry: stored text where the width is one of them, click's otherwise,
    the same bytes either way (no COLUMNS and not a terminal: 80 columns, as shutil says)."""
    got = run(ENTRY[prog], args, columns)
    assert got.returncode == 0 and not got.stderr
    assert got.stdout == by_click(prog, args, columns)


def test_help_imports_neither_click_nor_the_command_line():
    code = ("import sys; sys.argv = ['nsinspect', 'pod', '--help']; from nsinspect.entry import main\n"
            "try: main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('nsinspect')))")
    r = run(code, [], 80)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "['nsinspect', 'nsinspect._help', 'nsinspect.entry']"
    # Not a stored width: click answers (and is imported), and the text is still the same as click's.
    r = run(code, [], 90)
    assert "'click'" in r.stdout.splitlines()[-1]


def test_other_arguments_still_go_to_click():
    """Only ``[COMMAND] --help|-h`` is answered here; an option before it, or an unknown command, is click's to judge."""
    r = run(ENTRY["nsinspect"], ["--local", "--help"], 80)
    assert r.returncode == 0 and r.stdout == by_click("nsinspect", ["--local", "--help"], 80)
    r = run(ENTRY["nsinspect"], ["nosuch", "--help"], 80)
    assert r.returncode == 2 and "No such command 'nosuch'" in r.stderr and not r.stdout


def in_terminal(code: str, args: list[str], columns: int) -> bytes:
    """Run in a pseudo-terminal of ``columns`` columns (no COLUMNS in the environment); its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child: size its terminal, then run
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-c", code, *args], env)
    out = read_pty(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out


@pytest.mark.parametrize("columns", [80, 120, 95])
def test_in_a_terminal_of_any_width(columns):
    """In a real terminal the width comes from the terminal: the entry's answer equals click's."""
    click_code = "import sys; from nsinspect.cli import main; main(sys.argv[1:])"
    assert in_terminal(ENTRY["nsinspect"], ["--help"], columns) == in_terminal(click_code, ["--help"], columns)


def test_help_into_a_closed_pipe():
    """``nsinspect --help | head -1``: no complaint, exit 0, as the command line does."""
    r = subprocess.run(f"{sys.executable} -c '{ENTRY['nsinspect']}' --help | head -c 10", shell=True,
                       capture_output=True, text=True, cwd=ROOT)
    assert r.stdout == "Usage: nsi" and r.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["pod", "-h"], ["--version"]])
def test_unwritable_or_closed_stdout_as_the_command_line(args):
    """stdout closed (``>&-``) or failing (/dev/full): the entry answers as the command line does (nothing,
    exit 0; its one-sentence internal error, its exit code), never a traceback."""
    for redirect in (">&-", ">/dev/full"):
        got = [subprocess.run(f"{sys.executable} -c '{code}' {' '.join(args)} {redirect}", shell=True,
                              capture_output=True, text=True, cwd=ROOT) for code in (ENTRY["nsinspect"], "from nsinspect.cli import main; main()")]
        assert (got[0].returncode, got[0].stderr) == (got[1].returncode, got[1].stderr), redirect
        assert "Traceback" not in got[0].stderr
