"""The console scripts' entry points: ``nsinspect`` and ``kubectl-nsinspect``.

``--version`` and ``--help`` (``-h``, ``COMMAND --help``) are answered here, before the command line
(and click) is imported: they are what people and installers run first, and they should cost little
more than the interpreter's start.  The help texts are click's own, generated into
``nsinspect._help`` (scripts/gen_help.py; a test renders them again and compares): they are used
when the terminal is as wide as one they were made for, and click writes the help otherwise.
Everything else goes to ``nsinspect.cli``.
"""

import os
import sys

_MAX_CONTENT_WIDTH = 100  # the command line's (nsinspect.cli); scripts/gen_help.py checks it is still so


def _answered_here(prog: str) -> bool:
    args = sys.argv[1:]
    if args == ["--version"]:
        from nsinspect import __version__

        return _write(f"nsinspect {__version__}\n")
    if not 1 <= len(args) <= 2 or args[-1] not in ("--help", "-h") or (len(args) == 2 and args[0].startswith("-")):
        return False
    from nsinspect._help import TEXTS

    text = TEXTS.get((prog, args[0] if len(args) == 2 else "", _help_width()))
    return text is not None and _write(text)


def _help_width() -> int:
    """The width click's help formatter takes: the terminal's columns as ``shutil.get_terminal_size``
    finds them ($COLUMNS, then the terminal of stdout, then 80), at most max_content_width, minus 2,
    at least 50."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return max(min(columns, _MAX_CONTENT_WIDTH) - 2, 50)


def _write(text: str) -> bool:
    """Write the answer; False when it could not be written (a full disk, an I/O error): the command line
    then writes it again and reports the failure as it reports any (one sentence, its exit code)."""
    out = sys.stdout
    if out is None:  # started with stdout closed: nothing to write to, as click's echo
        return True
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # the reader went away (| head): not an error, as in nsinspect.cli
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except OSError:
        return False
    return True


def main() -> None:
    if not _answered_here("nsinspect"):
        from nsinspect.cli import main as cli_main

        cli_main()


def kubectl_main() -> None:
    if not _answered_here("kubectl nsinspect"):
        from nsinspect.cli import kubectl_main as cli_kubectl_main

        cli_kubectl_main()
