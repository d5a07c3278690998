"""The contracts the three front doors share: the Engine protocol, errors that carry their codes,
and the one table of sharing rules.  Pure: no root, no runtime."""

from __future__ import annotations

import inspect

import grpc
import pytest

from nsinspect import errors, sharing
from nsinspect.agent.client import AgentEngine
from nsinspect.cluster.engine import ClusterEngine
from nsinspect.engine import Engine
from nsinspect.model import NS_TYPES, PodSpec
from nsinspect.node.cached import CachedEngine
from nsinspect.node.engine import LocalEngine

ENGINES = [LocalEngine, CachedEngine, AgentEngine, ClusterEngine]
METHODS = [n for n, v in vars(Engine).items() if callable(v) and not n.startswith("_")]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)
@pytest.mark.parametrize("method", METHODS)
def test_every_engine_has_the_protocol_s_signature(engine, method):
    """Same parameter names, kinds and defaults as Engine's: the CLI calls them all alike."""
    want = inspect.signature(getattr(Engine, method))
    got = inspect.signature(getattr(engine, method))
    shape = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]  # noqa: E731
    assert shape(got) == shape(want)


def test_the_cli_never_asks_which_engine_it_has():
    import nsinspect.cli as cli

    source = inspect.getsource(cli)
    for name in ("LocalEngine)", "AgentEngine)", "ClusterEngine)", "isinstance(engine", ".namespace"):
        assert name not in source


@pytest.mark.parametrize(
    "cls, exit_code, status",
    [(errors.InvalidArgument, 2, "INVALID_ARGUMENT"), (errors.NotFound, 3, "NOT_FOUND"), (errors.Unavailable, 4, "UNAVAILABLE"),
     (errors.PermissionDenied, 5, "PERMISSION_DENIED"), (errors.NoSuchProcess, 3, "NOT_FOUND"),
     (errors.AccessDenied, 5, "PERMISSION_DENIED"), (errors.NsinspectError, 70, "INTERNAL")],
)
def test_each_error_carries_the_contract_s_codes(cls, exit_code, status):
    assert cls.exit_code == exit_code
    assert grpc.StatusCode[cls.grpc_code].name == status
    if cls in errors.BY_GRPC_CODE.values():
        assert errors.BY_GRPC_CODE[status] is cls


def test_a_runtime_status_becomes_our_error_with_one_sentence():
    from nsinspect.cri.client import map_rpc_error

    class Rpc(grpc.RpcError):
        def __init__(self, code, details):
            self._c, self._d = code, details

        def code(self):
            return self._c

        def details(self):
            return self._d

    e = map_rpc_error(Rpc(grpc.StatusCode.UNAVAILABLE, "connection error: desc = transport: error: connection refused"), "ListPodSandbox")
    assert isinstance(e, errors.Unavailable) and str(e) == (
        "ListPodSandbox: the container runtime does not answer (connection refused); check that it is running")
    assert isinstance(map_rpc_error(Rpc(grpc.StatusCode.UNAUTHENTICATED, "x"), "Version"), errors.PermissionDenied)
    assert isinstance(map_rpc_error(Rpc(grpc.StatusCode.NOT_FOUND, "gone"), "container 1"), errors.NotFound)
    assert "DATA_LOSS" in str(map_rpc_error(Rpc(grpc.StatusCode.DATA_LOSS, "x"), "Version"))


# What kubelet sends for each kind of pod (CRI NamespaceOption) and what its spec says: the
# runtime's expectation and the spec's declaration must be the same state for every type the spec governs.
KINDS = {
    "plain": ({"network": "POD", "pid": "CONTAINER", "ipc": "POD"}, PodSpec()),
    "shareProcessNamespace": ({"network": "POD", "pid": "POD", "ipc": "POD"}, PodSpec(share_process_namespace=True)),
    "hostNetwork": ({"network": "NODE", "pid": "CONTAINER", "ipc": "POD"}, PodSpec(host_network=True)),
    "hostPID+hostIPC": ({"network": "POD", "pid": "NODE", "ipc": "NODE"}, PodSpec(host_pid=True, host_ipc=True)),
    "hostUsers: false": ({"network": "POD", "pid": "CONTAINER", "ipc": "POD", "userns": "POD"}, PodSpec(host_users=False)),
}
EXPECTED = {  # net uts ipc pid user mnt cgroup(v1) time
    "plain": "shared shared shared private host private host host",
    "shareProcessNamespace": "shared shared shared shared host private host host",
    "hostNetwork": "host host shared private host private host host",
    "hostPID+hostIPC": "shared shared host host host private host host",
    "hostUsers: false": "shared shared shared private shared private host host",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ephemeral", [False, True])
def test_the_rules_for_each_kind_of_pod(kind, ephemeral):
    options, spec = KINDS[kind]
    order = ("net", "uts", "ipc", "pid", "user", "mnt", "cgroup", "time")
    want = dict(zip(order, EXPECTED[kind].split(), strict=True))
    if ephemeral and want["pid"] == "private":
        want["pid"] = "mixed"  # an ephemeral container joined its target's
    exp = sharing.expected(sharing.ask_of_options(options, ephemeral), sharing.Node(cgroup2=False))
    assert {t: s for t, (s, _why) in exp.items()} == want
    assert all(why for _s, why in exp.values())
    declared = sharing.declared(sharing.ask_of_spec(spec, ephemeral))
    assert set(declared) == {"net", "uts", "ipc", "pid", "user"}  # mnt, cgroup, time: the spec says nothing
    assert {t: s for t, (s, _why) in declared.items()} == {t: want[t] for t in declared}


def test_every_type_has_a_rule_that_always_matches():
    for t in NS_TYPES:
        assert sharing.RULES[t][-1].when(sharing.Ask(), sharing.Node()), t
    for (t, state) in sharing.HINTS:
        assert t in NS_TYPES and any(r.state == state for r in sharing.RULES[t]), (t, state)


def test_the_spec_s_words_for_host_users():
    assert sharing.declared(sharing.ask_of_spec(PodSpec()))["user"][1] == "spec.hostUsers is not set (true)"
    assert sharing.declared(sharing.ask_of_spec(PodSpec(host_users=True)))["user"][1] == "spec.hostUsers: true"
    assert sharing.declared(sharing.ask_of_spec(PodSpec(host_users=False)))["user"] == ("shared", "spec.hostUsers: false")


def test_version_answers_before_the_command_line_is_imported():
    """``nsinspect --version`` costs the interpreter's start and little more: no click, no package beyond its version."""
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['nsinspect', '--version']; from nsinspect.entry import main; main(); "
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('nsinspect.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, modules = r.stdout.splitlines()
    assert version.startswith("nsinspect ") and modules == "['nsinspect.entry']"
