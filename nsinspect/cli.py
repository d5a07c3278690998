"""The command line.  The only layer that chooses exit codes.

Heavy modules (rich, grpc, kubernetes) are imported inside the commands that need them,
so ``nsinspect --help`` stays fast.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from nsinspect import NS_TYPES, __version__
from nsinspect.agent import AGENT_LISTEN
from nsinspect.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, InvalidArgument, NsinspectError, Unavailable

if TYPE_CHECKING:
    from nsinspect.engine import Engine, Progress

EXIT_USAGE, EXIT_UNAVAILABLE = InvalidArgument.exit_code, Unavailable.exit_code

OUTPUT_FORMATS = ("table", "wide", "json", "yaml", "tree")  # tree: pod only (the pod picture)


class App:
    """What every command needs: where to read from, and how to write.

    A plain class, not a dataclass: importing dataclasses costs more than --help itself.
    """

    def __init__(
        self, proc_root: str = "/proc", runtime_endpoint: str | None = None, agent: str | None = None,
        host_root: str | None = None, local: bool = False, kubeconfig: str | None = None, context: str | None = None,
        agent_namespace: str = "nsinspect-system", as_user: str | None = None, as_groups: tuple[str, ...] = (),
        as_uid: str | None = None, cluster: bool = False,
    ):
        self.proc_root = proc_root
        self.runtime_endpoint = runtime_endpoint
        self.agent = agent
        self.host_root = host_root
        self.local = local  # --local, or a node-side option was given (-r, --proc, --host-root)
        self.kubeconfig = kubeconfig
        self.context = context
        self.agent_namespace = agent_namespace
        self.as_user = as_user  # --as: impersonate this user (cluster mode)
        self.as_groups = as_groups  # --as-group, repeatable
        self.as_uid = as_uid  # --as-uid
        self.cluster = cluster  # cluster mode forced (kubectl-nsinspect, --kubeconfig, --context, --as)
        self._engine: Engine | None = None

    def mode(self) -> str:
        """local, agent or cluster (README, "Modes"): --agent, then --local (or node-side options),
        then cluster when forced or when a Kubernetes configuration is found, else local."""
        if self.agent:
            return "agent"
        if self.local:
            return "local"
        if self.cluster:
            return "cluster"
        from nsinspect.cluster.api import configured

        return "cluster" if configured(self.kubeconfig) else "local"

    def engine(self, mode: str | None = None) -> Engine:
        """The inspection engine: in-process (local mode), an agent over gRPC, or the cluster.
        Every command asks it the same way, whichever it is."""
        if self._engine is None:
            mode = mode or self.mode()
            if mode == "agent":
                from nsinspect.agent.client import AgentEngine

                self._engine = AgentEngine(self.agent or "")
            elif mode == "cluster":
                from nsinspect.cluster.engine import ClusterEngine
                from nsinspect.engine import validate_name

                validate_name(self.agent_namespace, "agent namespace")
                self._engine = ClusterEngine(self.kube(), self.agent_namespace)
            else:
                from nsinspect.node.engine import LocalEngine

                self._engine = LocalEngine(self.proc_root, self.runtime_endpoint, self.host_root)
        return self._engine

    def close(self) -> None:
        """Let go of the engine's files and connections (the command ran in a process that goes on: a test's, a fuzzer's)."""
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.close()

    def kube(self) -> Any:
        """The signed-in Kubernetes API client of cluster mode."""
        from nsinspect.cluster.api import Kube

        return Kube(self.kubeconfig, self.context, as_user=self.as_user, as_groups=self.as_groups, as_uid=self.as_uid)

    def node_engine(self, node_name: str | None) -> Engine:
        """For node and pid: this machine (or --agent), unless --node names a node of the cluster."""
        if node_name:
            if self.agent or self.local:
                raise InvalidArgument("--node asks the cluster; drop --agent/--local (or drop --node to read this machine)")
            return self.engine("cluster")
        return self.engine("agent" if self.agent else "local")

    def emit(self, view: object, fmt: str, tree: str | None = None) -> None:
        import shutil

        from nsinspect.render import render

        tty = sys.stdout.isatty()
        width = None
        if tty and fmt in ("table", "wide"):
            width = shutil.get_terminal_size().columns
        elif fmt == "tree":  # always drawn to a width: $COLUMNS, else the terminal's, else 80
            width = shutil.get_terminal_size().columns
        color = tty and "NO_COLOR" not in os.environ
        sys.stdout.write(render(view, fmt, width=width, color=color, tree=tree, ascii_only=not utf8_output()))
        sys.stdout.flush()


def utf8_output() -> bool:
    """Can stdout carry box-drawing characters?  Its encoding follows the locale (LC_ALL, LC_CTYPE, LANG),
    PYTHONIOENCODING and Python's UTF-8 mode (which a C or POSIX locale turns on: PEP 538, 540)."""
    import codecs

    try:
        return codecs.lookup(sys.stdout.encoding or "ascii").name == "utf-8"
    except LookupError:
        return False


def _output_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    name = ctx.command.name
    if value == "tree" and name != "pod":
        also = " (the node's namespace hierarchy is 'nsinspect node --tree')" if name == "node" else ""
        raise InvalidArgument(f"-o tree draws one pod's picture: use it with 'nsinspect pod NAME', not with '{name}'{also}")
    return value


def _pid_argument(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A pid as the kernel writes one: ASCII digits, 1 to PID_MAX_LIMIT (``int()`` would take " 1", "+1", "1_000", "٣")."""
    from nsinspect.limits import PID_MAX_LIMIT, decimal

    pid = decimal(value, PID_MAX_LIMIT)
    if not pid:
        raise InvalidArgument(f"invalid pid {value[:40]!r}; a pid is written in ASCII digits (no sign, space or leading zero), "
                              f"from 1 to {PID_MAX_LIMIT}")
    return pid


node_option = click.option(
    "--node", "node_name", metavar="NAME", help="Ask the agent on this node of the cluster (default: read this machine)."
)

output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    callback=_output_format,
    help="Output format. JSON and YAML are never truncated; tree draws the pod's picture (pod only).",
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
@click.option("--local", is_flag=True, help="Read this machine (local mode) even when a Kubernetes configuration is found.")
@click.option("--kubeconfig", metavar="PATH", help="Cluster mode: the kubeconfig (default: $KUBECONFIG, then ~/.kube/config).")
@click.option("--context", metavar="NAME", help="Cluster mode: the kubeconfig context (default: the current one).")
@click.option("--as", "as_user", metavar="USER", help="Cluster mode: act as this user (Kubernetes impersonation, as kubectl --as).")
@click.option("--as-group", "as_groups", metavar="GROUP", multiple=True, help="Cluster mode: act as a member of this group (repeatable; needs --as).")
@click.option("--as-uid", "as_uid", metavar="UID", help="Cluster mode: act with this UID (needs --as).")
@click.option(
    "--agent-namespace",
    envvar="NSINSPECT_AGENT_NAMESPACE",
    default="nsinspect-system",
    show_default=True,
    metavar="NS",
    help="Cluster mode: where the nsinspect agent DaemonSet runs.",
)
@click.pass_context
def cli(
    ctx: click.Context, proc_root: str, runtime_endpoint: str | None, agent: str | None, host_root: str | None,
    local: bool, kubeconfig: str | None, context: str | None, as_user: str | None, as_groups: tuple[str, ...],
    as_uid: str | None, agent_namespace: str,
) -> None:
    """Which Linux namespaces do the containers of a pod really share?

    Reads /proc/<pid>/ns/* and the container runtime (CRI), and compares the
    kernel's truth with what each pod asked for.  With a Kubernetes configuration
    (kubeconfig or in-cluster), pod, pods and check ask the agent on the pod's node
    through the API server; --local reads this machine instead.
    """
    from click.core import ParameterSource

    node_side = any(
        ctx.get_parameter_source(p) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        for p in ("proc_root", "runtime_endpoint", "host_root")
    )
    cluster_options = bool(kubeconfig or context or as_user or as_groups or as_uid)
    forced_cluster = cluster_options or bool(isinstance(ctx.obj, dict) and ctx.obj.get("kubectl"))
    if sum((bool(agent), local, cluster_options)) > 1:
        raise InvalidArgument("choose one mode: --agent ADDR, --local, or --kubeconfig/--context/--as (cluster)")
    ctx.obj = App(
        proc_root=proc_root, runtime_endpoint=runtime_endpoint or None, agent=agent, host_root=host_root,
        local=local or (node_side and not forced_cluster), kubeconfig=kubeconfig, context=context,
        as_user=as_user, as_groups=tuple(as_groups), as_uid=as_uid, agent_namespace=agent_namespace, cluster=forced_cluster,
    )
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.option(
    "-t",
    "--type",
    "types",
    multiple=True,
    type=click.Choice(NS_TYPES),
    help="Only namespaces of this type (repeatable).",
)
@click.option(
    "-T",
    "--tree",
    type=click.Choice(("owner", "parent", "process")),
    is_flag=False,
    flag_value="owner",
    default=None,
    help="Draw the table as a tree, as lsns -T: by owning user namespace (the default), by parent "
    "(pid and user namespaces), or by process. JSON and YAML stay flat (pns and ons carry the tree).",
)
@node_option
@output_option
@click.pass_obj
def node(app: App, types: tuple[str, ...], tree: str | None, node_name: str | None, fmt: str) -> None:
    """Every namespace on this node, as lsns shows it (plus POD and CONTAINER).

    Also the namespaces no process is in (NPROCS 0): bind-mounted (ip netns, a pod's
    /run/netns/cni-*), held by an open fd, or only the parent or owner of others."""
    wanted = tuple(t for t in NS_TYPES if t in types) if types else NS_TYPES
    engine = app.node_engine(node_name)
    app.emit(engine.node(wanted, node=node_name), fmt, tree=tree)


@cli.command()
@click.argument("pid", callback=_pid_argument)
@node_option
@output_option
@click.pass_obj
def pid(app: App, pid: int, node_name: str | None, fmt: str) -> None:
    """One process: its 8 namespaces, which are the node's, and its pod."""
    engine = app.node_engine(node_name)
    app.emit(engine.process(pid, node=node_name), fmt)


namespace_option = click.option(
    "-n", "--namespace", default=None, metavar="NS",
    help="The pod's Kubernetes namespace (default: the context's in cluster mode, else \"default\").",
)


@cli.command()
@click.option("-n", "--namespace", default=None, metavar="NS", help="Only pods of this Kubernetes namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods of every namespace (the default on a node).")
@output_option
@click.pass_obj
def pods(app: App, namespace: str | None, all_namespaces: bool, fmt: str) -> int:
    """One row per pod: the sharing state of each namespace type.

    On a node: the pods of this node (all namespaces unless -n).  In cluster mode: the pods of
    the context's namespace (or -n, or -A), asked of every node's agent at once."""
    if namespace and all_namespaces:
        raise InvalidArgument("use either -n NAMESPACE or -A, not both")
    view = app.engine().pods(namespace or None, all_namespaces, progress=_progress_bar())
    app.emit(view, fmt)
    if view.failed:
        n = len(view.failed)
        click.echo(f"nsinspect: {n} of {len(view.nodes)} node{'s' if len(view.nodes) != 1 else ''} could not be asked "
                   "(their pods show no members; the reasons are listed above); fix them and ask again.", err=True)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _progress_bar() -> Progress | None:
    """A progress callback drawing a bar on stderr (a terminal only, and only for more than a few nodes)."""
    if not sys.stderr.isatty() or os.environ.get("NSINSPECT_NO_PROGRESS"):
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int, node: str) -> None:
        if total < 4:
            return
        if "bar" not in state:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(TextColumn("asking agents"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                           console=Console(stderr=True), transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("", total=total)
        from nsinspect.render.text import safe

        state["bar"].update(state["task"], completed=done, description=safe(node))
        if done == total:
            state["bar"].stop()

    return update


@cli.command()
@click.argument("name")
@namespace_option
@click.option("-c", "--container", default=None, help="Show only this container (and the sandbox).")
@click.option("--details", is_flag=True,
              help="The evidence of each namespace, per member: addresses, hostname, System V objects, mounts, "
                   "uid 0 on the node, cgroup limits, processes (always in -o wide; in -o tree, in the boxes).")
@output_option
@click.pass_obj
def pod(app: App, name: str, namespace: str | None, container: str | None, details: bool, fmt: str) -> None:
    """The comparison: the pod's members x 8 namespace types, and actual vs expected sharing
    (and, in cluster mode, what the pod's spec declares)."""
    wide = fmt == "wide"
    app.emit(app.engine().pod(name, namespace or None, container, detail=wide, details=details or wide), fmt)


@cli.command()
@click.argument("name")
@namespace_option
@click.option("--expect", "expects", multiple=True, metavar="TYPE=STATE", help="e.g. pid=shared (repeatable).")
@output_option
@click.pass_obj
def check(app: App, name: str, namespace: str | None, expects: tuple[str, ...], fmt: str) -> int:
    """Assert how a pod shares namespaces: exit 0 when every expectation holds, 1 when one does not.

    STATE is shared, private, host or mixed.
    """
    from nsinspect.engine import parse_expectations

    wanted = parse_expectations(expects)
    result = app.engine().check(name, namespace or None, wanted)
    app.emit(result, fmt)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


@cli.command()
@click.option("--apply", "do_apply", is_flag=True, help="Apply them to the cluster (server-side apply) instead of printing.")
@click.option("--image", metavar="IMAGE", help="The agent's image (default: the one in the manifests).")
@click.pass_obj
def deploy(app: App, do_apply: bool, image: str | None) -> None:
    """The agent's manifests (Namespace, ServiceAccount, Role, NetworkPolicy, DaemonSet): printed as
    YAML for kubectl apply -f -, or applied with --apply."""
    from nsinspect.cluster import deploy as d

    objects = d.manifests(image)
    if not do_apply:
        sys.stdout.write(d.to_yaml(objects))
        return
    if app.agent or app.local:
        raise InvalidArgument("--apply needs the cluster; drop --agent/--local")
    for line in d.apply(app.kube(), objects):
        click.echo(f"{line} applied")


@cli.command()
@click.option("--listen", default=AGENT_LISTEN, show_default=True, metavar="ADDR",
              help="HOST:PORT or unix:PATH. Keep it on loopback: clients come through pods/portforward.")
@click.option("--cache-ttl", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, metavar="SECONDS",
              help="How old the runtime's pod list may be; while pods are asked it is kept fresh in the background. "
                   "Each member's process is checked on every request, its namespaces read at least every 10 s.")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Concurrent requests.")
@click.option("--probe", is_flag=True, help="Do not serve: check the health of the agent at --listen and exit 0 or 4.")
@click.option("-v", "--verbose", is_flag=True, help="Log every failed request.")
@click.pass_obj
def agent(app: App, listen: str, cache_ttl: float, workers: int, probe: bool, verbose: bool) -> int:
    """Run the node agent: this node's answers over gRPC (read-only), for --agent and cluster mode."""
    if app.agent:
        raise InvalidArgument("--agent asks an agent; to run one, drop --agent (nsinspect agent --listen ADDR)")
    from nsinspect.agent import server as agent_mod

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
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(app.proc_root, app.runtime_endpoint, app.host_root, parallel=False, ttl=cache_ttl)
    agent_mod.serve(engine, listen, workers=workers)
    return EXIT_OK


# Options of the group that kubectl users put anywhere (kubectl's habit), and command options
# they put before the command: both are moved to where click expects them.
_GLOBAL_WITH_VALUE = ("--proc", "-r", "--runtime-endpoint", "--agent", "--host-root", "--kubeconfig", "--context",
                      "--as", "--as-group", "--as-uid", "--agent-namespace")
_GLOBAL_FLAGS = ("--local",)
_COMMAND_WITH_VALUE = ("-n", "--namespace", "-o", "--output", "-c", "--container")
_COMMAND_FLAGS = ("-A", "--all-namespaces", "--details")


def normalize_argv(argv: list[str]) -> list[str]:
    """``pod x --context prod`` -> ``--context prod pod x``; ``-n shop pod x`` -> ``pod x -n shop``."""
    before: list[str] = []  # global options, in order
    after: list[str] = []  # command options found before the command
    rest: list[str] = []
    command_seen = False
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        name = tok.split("=", 1)[0]
        takes_value = "=" not in tok
        if len(tok) > 2 and tok[0] == "-" and tok[1] != "-" and tok[:2] in _GLOBAL_WITH_VALUE + _COMMAND_WITH_VALUE:
            name, takes_value = tok[:2], False  # -nshop, -ojson: the value is attached, as kubectl allows
        if name in _GLOBAL_WITH_VALUE or name in _GLOBAL_FLAGS:
            n = 2 if name in _GLOBAL_WITH_VALUE and takes_value else 1
            before.extend(argv[i:i + n])
            i += n
            continue
        if not command_seen and (name in _COMMAND_WITH_VALUE or name in _COMMAND_FLAGS):
            n = 2 if name in _COMMAND_WITH_VALUE and takes_value else 1
            after.extend(argv[i:i + n])
            i += n
            continue
        if not tok.startswith("-") and not command_seen:
            command_seen = True
            rest.append(tok)
            rest.extend(after)
            after = []
        else:
            rest.append(tok)
        i += 1
    return before + rest + after


def kubectl_main() -> None:
    """``kubectl nsinspect ...`` (the kubectl-nsinspect plugin): cluster mode unless --local or --agent."""
    main(sys.argv[1:], prog_name="kubectl nsinspect", kubectl=True)


def main(argv: list[str] | None = None, prog_name: str = "nsinspect", kubectl: bool = False) -> None:
    """Entry point: run the CLI and turn every outcome into an exit code."""
    argv = normalize_argv(sys.argv[1:] if argv is None else list(argv))
    gc.disable()
    try:
        rv = cli.main(args=argv, prog_name=prog_name, standalone_mode=False, obj={"kubectl": kubectl})
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

    click.echo(f"nsinspect: {safe(str(e))}", err=True)
    sys.exit(e.exit_code)

