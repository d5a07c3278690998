"""The command line.  The only layer that chooses exit codes.

Heavy modules (rich, grpc, kubernetes) are imported inside the commands that need them,
so ``nsinspect --help`` stays fast.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from nsinspect import AGENT_LISTEN, __version__
from nsinspect.errors import InvalidArgument, NotFound, NsinspectError, PermissionDenied, Unavailable
from nsinspect.model import NS_TYPES

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_PERMISSION = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL = 70  # a bug in nsinspect (EX_SOFTWARE); distinct from a failed check

_EXIT_CODES: tuple[tuple[type[NsinspectError], int], ...] = (
    (InvalidArgument, EXIT_USAGE),
    (NotFound, EXIT_NOT_FOUND),
    (Unavailable, EXIT_UNAVAILABLE),
    (PermissionDenied, EXIT_PERMISSION),
)

OUTPUT_FORMATS = ("table", "wide", "json", "yaml")


@dataclass
class App:
    """What every command needs: where to read from, and how to write."""

    proc_root: str = "/proc"
    runtime_endpoint: str | None = None
    agent: str | None = None
    host_root: str | None = None
    _engine: Any = field(default=None, repr=False)

    def engine(self) -> Any:
        """The inspection engine: in-process (local mode) or an agent over gRPC."""
        if self._engine is None:
            if self.agent:
                from nsinspect.client import AgentEngine

                self._engine = AgentEngine(self.agent)
            else:
                from nsinspect.engine import LocalEngine

                self._engine = LocalEngine(self.proc_root, self.runtime_endpoint, self.host_root)
        return self._engine

    def emit(self, view: object, fmt: str) -> None:
        from nsinspect.render import render

        tty = sys.stdout.isatty()
        width = None
        if tty and fmt in ("table", "wide"):
            width = shutil.get_terminal_size().columns
        color = tty and "NO_COLOR" not in os.environ
        sys.stdout.write(render(view, fmt, width=width, color=color))
        sys.stdout.flush()


output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="Output format. JSON and YAML are never truncated.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="nsinspect", message="%(prog)s %(version)s")
@click.option(
    "--proc",
    "proc_root",
    envvar="NSINSPECT_PROC",
    default="/proc",
    show_default=True,
    metavar="PATH",
    help="procfs root to read (env NSINSPECT_PROC), e.g. /host/proc in a container.",
)
@click.option(
    "-r",
    "--runtime-endpoint",
    envvar="CONTAINER_RUNTIME_ENDPOINT",
    metavar="URI",
    help="CRI socket (env CONTAINER_RUNTIME_ENDPOINT); default: probe containerd, CRI-O, cri-dockerd, k3s.",
)
@click.option("--agent", metavar="ADDR", help="Ask the nsinspect agent at host:port or unix:PATH instead of reading this node.")
@click.option(
    "--host-root",
    envvar="NSINSPECT_HOST_ROOT",
    metavar="PATH",
    help="The node's root filesystem (e.g. /host): runtime sockets, /etc/crictl.yaml and /sys are read under it. "
    "Default: the parent of --proc when --proc is not /proc.",
)
@click.pass_context
def cli(ctx: click.Context, proc_root: str, runtime_endpoint: str | None, agent: str | None, host_root: str | None) -> None:
    """Which Linux namespaces do the containers of a pod really share?

    Reads /proc/<pid>/ns/* and the container runtime (CRI), and compares the
    kernel's truth with what each pod asked for.
    """
    ctx.obj = App(proc_root=proc_root, runtime_endpoint=runtime_endpoint or None, agent=agent, host_root=host_root)


@cli.command()
@click.option(
    "-t",
    "--type",
    "types",
    multiple=True,
    type=click.Choice(NS_TYPES),
    help="Only namespaces of this type (repeatable).",
)
@output_option
@click.pass_obj
def node(app: App, types: tuple[str, ...], fmt: str) -> None:
    """Every namespace on this node, as lsns shows it (plus POD and CONTAINER)."""
    wanted = tuple(t for t in NS_TYPES if t in types) if types else NS_TYPES
    app.emit(app.engine().node(wanted), fmt)


@cli.command()
@click.argument("pid", type=int)
@output_option
@click.pass_obj
def pid(app: App, pid: int, fmt: str) -> None:
    """One process: its 8 namespaces, which are the node's, and its pod."""
    app.emit(app.engine().process(pid), fmt)


namespace_option = click.option(
    "-n", "--namespace", default="default", show_default=True, help="The pod's Kubernetes namespace."
)


@cli.command()
@click.option("-n", "--namespace", default=None, help="Only pods of this Kubernetes namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods of every namespace (the default on a node).")
@output_option
@click.pass_obj
def pods(app: App, namespace: str | None, all_namespaces: bool, fmt: str) -> None:
    """One row per pod on this node: the sharing state of each namespace type."""
    if namespace and all_namespaces:
        raise InvalidArgument("use either -n NAMESPACE or -A, not both")
    app.emit(app.engine().pods(None if all_namespaces else namespace), fmt)


@cli.command()
@click.argument("name")
@namespace_option
@click.option("-c", "--container", default=None, help="Show only this container (and the sandbox).")
@output_option
@click.pass_obj
def pod(app: App, name: str, namespace: str, container: str | None, fmt: str) -> None:
    """The comparison: the pod's members x 8 namespace types, and actual vs expected sharing."""
    app.emit(app.engine().pod(name, namespace, container, detail=(fmt == "wide")), fmt)


@cli.command()
@click.argument("name")
@namespace_option
@click.option("--expect", "expects", multiple=True, metavar="TYPE=STATE", help="e.g. pid=shared (repeatable).")
@output_option
@click.pass_obj
def check(app: App, name: str, namespace: str, expects: tuple[str, ...], fmt: str) -> int:
    """Assert how a pod shares namespaces: exit 0 when every expectation holds, 1 when one does not.

    STATE is shared, private, host or mixed.
    """
    from nsinspect.engine import parse_expectations

    wanted = parse_expectations(expects)
    result = app.engine().check(name, namespace, wanted)
    app.emit(result, fmt)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


@cli.command()
@click.option("--listen", default=AGENT_LISTEN, show_default=True, metavar="ADDR",
              help="HOST:PORT or unix:PATH. Keep it on loopback: clients come through pods/portforward.")
@click.option("--cache-ttl", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, metavar="SECONDS",
              help="How old the runtime's pod list may be (namespaces are always read fresh from /proc).")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Concurrent requests.")
@click.option("--probe", is_flag=True, help="Do not serve: check the health of the agent at --listen and exit 0 or 4.")
@click.option("-v", "--verbose", is_flag=True, help="Log every failed request.")
@click.pass_obj
def agent(app: App, listen: str, cache_ttl: float, workers: int, probe: bool, verbose: bool) -> int:
    """Run the node agent: this node's answers over gRPC (read-only), for --agent and cluster mode."""
    if app.agent:
        raise InvalidArgument("--agent asks an agent; to run one, drop --agent (nsinspect agent --listen ADDR)")
    from nsinspect import agent as agent_mod

    if probe:
        if agent_mod.probe(listen):
            return EXIT_OK
        raise Unavailable(f"the nsinspect agent at {listen} is not serving")
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from nsinspect.engine import LocalEngine

    engine = LocalEngine(app.proc_root, app.runtime_endpoint, app.host_root, parallel=False, cache_ttl=cache_ttl)
    agent_mod.serve(engine, listen, workers=workers)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every outcome into an exit code."""
    # A one-shot command builds ~100k small acyclic objects on a busy node; the cyclic GC
    # would walk them repeatedly for nothing.  (The agent, long-lived, turns it back on.)
    gc.disable()
    try:
        rv = cli.main(args=argv, prog_name="nsinspect", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE if isinstance(e, click.UsageError) else e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)
    except NsinspectError as e:
        _fail(e)
    except Exception as e:  # no tracebacks for users
        if os.environ.get("NSINSPECT_DEBUG"):
            raise
        from nsinspect.render.text import safe

        click.echo(
            f"nsinspect: internal error ({type(e).__name__}: {safe(str(e))}); "
            "rerun with NSINSPECT_DEBUG=1 and report the traceback.",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def _fail(e: NsinspectError) -> None:
    from nsinspect.render.text import safe

    code = next((c for cls, c in _EXIT_CODES if isinstance(e, cls)), EXIT_INTERNAL)
    click.echo(f"nsinspect: {safe(str(e))}", err=True)
    sys.exit(code)

