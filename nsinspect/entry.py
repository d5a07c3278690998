"""The console scripts' entry points: ``nsinspect`` and ``kubectl-nsinspect``.

``--version`` alone is answered here, before the command line (and click) is imported: it is what
scripts and installers run to see that nsinspect works, and it should cost little more than the
interpreter's start.  Everything else goes to ``nsinspect.cli``.
"""

import sys


def _version_only() -> bool:
    if sys.argv[1:] != ["--version"]:
        return False
    from nsinspect import __version__

    sys.stdout.write(f"nsinspect {__version__}\n")
    return True


def main() -> None:
    if not _version_only():
        from nsinspect.cli import main as cli_main

        cli_main()


def kubectl_main() -> None:
    if not _version_only():
        from nsinspect.cli import kubectl_main as cli_kubectl_main

        cli_kubectl_main()
