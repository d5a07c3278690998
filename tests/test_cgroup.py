"""cgroup verdicts as containerd and CRI-O lay out a pod's cgroup namespaces (docs/cgroup.md).

Each row is a pod as one runtime builds it, from the upstream sources:
- the sandbox (pause / infra) never gets a cgroup namespace: it is in the node's, on v1 and v2
  (containerd ``sandboxContainerSpec`` with ``defaultUnixNamespaces``; CRI-O ``InitInfraContainer``
  with runtime-tools' default namespaces);
- a container gets its own only on a v2 node and only when not privileged (containerd
  ``containerSpec``/``buildLinuxSpec``; CRI-O ``setupCgroupNamespace``); hostNetwork/hostPID change nothing;
- CRI-O with ``drop_infra_ctr`` (its default) runs no infra process unless the pod shares its pid namespace.
"""

from __future__ import annotations

import itertools

import pytest

from nsinspect.engine import evaluate
from nsinspect.model import APP, NS_TYPES, SANDBOX, Member, NamespaceId, PodInfo, PodView, Process, ProcessId
from nsinspect.node.pods import privileged_ids
from nsinspect.render import data
from nsinspect.sharing import SANDBOX_APART, node_of, sandbox_apart, verdicts

NODE = {t: NamespaceId(4, 4026531830 + i) for i, t in enumerate(NS_TYPES)}
_ino = itertools.count(4026532500)


def judge(members, options, cgroup2, priv=frozenset()):
    """The verdicts as the node makes them: the Node from the running containers' privileged flags."""
    return verdicts(members, options, NODE, node_of(members, cgroup2, priv))


def fresh() -> NamespaceId:
    return NamespaceId(4, next(_ino))


def member(name: str, role: str, cgroup: NamespaceId | None, running: bool = True) -> Member:
    """A member whose cgroup namespace is ``cgroup`` (None: the node's); the other types are not at stake here."""
    if not running:
        return Member(name, role, f"id-{name}", "notready" if role == SANDBOX else "exited")
    ns = dict(NODE, mnt=fresh(), cgroup=cgroup or NODE["cgroup"])
    return Member(name, role, f"id-{name}", "running", Process(ProcessId(next(_ino) % 100000, 1), 1, 0, "root", name, name), ns)


def pod(runtime: str, cgroup2: bool, privileged: tuple[bool, ...], pid: str = "CONTAINER",
        network: str = "POD", running: tuple[bool, ...] | None = None) -> tuple[list[Member], dict[str, str], frozenset[str]]:
    """The members as ``runtime`` (containerd, crio: CRI-O with its default drop_infra_ctr) makes them."""
    options = {"network": network, "pid": pid, "ipc": "POD", "userns": "NODE"}
    infra = runtime == "containerd" or pid == "POD"  # CRI-O drops the infra container unless pid=POD
    members = [member("pod", SANDBOX, None, running=infra)]
    running = running or (True,) * len(privileged)
    for i, (priv, up) in enumerate(zip(privileged, running, strict=True)):
        members.append(member(f"c{i}", APP, None if priv or not cgroup2 else fresh(), running=up))
    priv_ids = frozenset(f"id-c{i}" for i, priv in enumerate(privileged) if priv)
    return members, options, priv_ids


ROWS = [
    # runtime, v2, privileged flags of the containers, pid, network, running flags, actual, expected, sandbox set apart
    ("containerd", False, (False, False), "CONTAINER", "POD", None, "host", "host", False),
    ("containerd", False, (True, False), "CONTAINER", "POD", None, "host", "host", False),
    ("containerd", True, (False, False), "CONTAINER", "POD", None, "private", "private", True),
    ("containerd", True, (False,), "CONTAINER", "POD", None, "private", "private", True),
    ("containerd", True, (True,), "CONTAINER", "POD", None, "host", "host", False),
    ("containerd", True, (True, True), "CONTAINER", "POD", None, "host", "host", False),
    ("containerd", True, (True, False), "CONTAINER", "POD", None, "mixed", "mixed", True),
    ("containerd", True, (False, False), "POD", "POD", None, "private", "private", True),
    ("containerd", True, (False, False), "NODE", "NODE", None, "private", "private", True),  # hostPID + hostNetwork
    ("containerd", True, (False, False), "CONTAINER", "POD", (False, False), "host", "host", False),  # only the sandbox runs
    ("containerd", True, (False, False), "CONTAINER", "POD", (True, False), "private", "private", True),
    ("crio", False, (False, False), "CONTAINER", "POD", None, "host", "host", False),
    ("crio", False, (False, False), "POD", "POD", None, "host", "host", False),
    ("crio", True, (False, False), "CONTAINER", "POD", None, "private", "private", False),  # no infra process
    ("crio", True, (False, False), "POD", "POD", None, "private", "private", True),  # infra kept for pid=POD
    ("crio", True, (True, True), "POD", "POD", None, "host", "host", False),
    ("crio", True, (True, False), "CONTAINER", "NODE", None, "mixed", "mixed", False),
    ("crio", True, (False,), "NODE", "NODE", None, "private", "private", False),
]


@pytest.mark.parametrize("runtime, v2, privileged, pid, network, running, actual, expected, apart", ROWS,
                         ids=[f"{r[0]}-{'v2' if r[1] else 'v1'}-{i}" for i, r in enumerate(ROWS)])
def test_cgroup_verdict(runtime, v2, privileged, pid, network, running, actual, expected, apart):
    members, options, priv = pod(runtime, v2, privileged, pid, network, running)
    v = judge(members, options, v2, priv)["cgroup"]
    assert (v.actual, v.expected, v.ok) == (actual, expected, True), v.reason
    assert sandbox_apart(members, NODE) is apart


@pytest.mark.parametrize("v2", [False, True])
def test_other_types_still_count_the_sandbox(v2):
    """Only cgroup sets the sandbox apart: a hostNetwork sandbox with containers in their own network is mixed."""
    members, options, priv = pod("containerd", v2, (False, False))
    members = [members[0], *(m._replace(namespaces=dict(m.namespaces, net=fresh())) for m in members[1:])]
    assert judge(members, options, v2, priv)["net"].actual == "mixed"


@pytest.mark.parametrize(
    "case, v2, cgroups, privileged, actual, expected",
    [
        # A runtime that did not apply the rule is still caught.
        ("v2: an unprivileged container left in the node's", True, ("own", "node"), (False, False), "mixed", "private"),
        ("v2: two containers in one", True, ("same", "same"), (False, False), "shared", "private"),
        ("v1: a container with its own", False, ("own", "node"), (False, False), "mixed", "host"),
        ("v2: privileged but given its own", True, ("own",), (True,), "shared", "host"),
    ],
)
def test_cgroup_wrong_layouts_fail(case, v2, cgroups, privileged, actual, expected):
    shared = fresh()
    members = [member("pod", SANDBOX, None)]
    for i, where in enumerate(cgroups):
        members.append(member(f"c{i}", APP, {"own": fresh(), "node": None, "same": shared}[where]))
    priv = frozenset(f"id-c{i}" for i, p in enumerate(privileged) if p)
    v = judge(members, {"pid": "CONTAINER"}, v2, priv)["cgroup"]
    assert (v.actual, v.expected, v.ok) == (actual, expected, False), case


@pytest.mark.parametrize("sandbox_ns, actual, ok", [("own", "private", True), ("shares c0's", "mixed", False)])
def test_sandbox_outside_the_node_cgroup_namespace_is_counted(sandbox_ns, actual, ok):
    c0 = fresh()
    members = [member("pod", SANDBOX, fresh() if sandbox_ns == "own" else c0), member("c0", APP, c0), member("c1", APP, fresh())]
    v = judge(members, {"pid": "CONTAINER"}, True)["cgroup"]
    assert (v.actual, v.ok) == (actual, ok)
    assert not sandbox_apart(members, NODE)


def _view(members, cgroup2=True, priv=frozenset()) -> PodView:
    info = PodInfo("lab", "web", "uid", "sb", "node")
    return PodView(info, members, judge(members, {"pid": "CONTAINER"}, cgroup2, priv), dict(NODE))


def test_check_cgroup_private_on_v2_judges_the_containers_and_names_the_sandbox():
    members, _options, _priv = pod("containerd", True, (False, False))
    result = evaluate(_view(members), [("cgroup", "private"), ("net", "host")])
    cg, net = result.results
    assert cg.ok and cg.actual == "private"
    assert [m for m, _r, _i in cg.evidence] == ["c0", "c1"]
    assert cg.apart == (("pod", SANDBOX, NODE["cgroup"].ino),) and cg.apart_reason == SANDBOX_APART
    assert not net.apart and len(net.evidence) == 3  # every other type counts the sandbox
    out = data.check(result)
    assert out["results"][0]["apart"] == [{"member": "pod", "role": SANDBOX, "ns": NODE["cgroup"].ino}]
    assert out["results"][0]["ok"] is True and out["results"][1]["apart"] == []


def test_check_cgroup_on_v1_counts_everyone():
    members, _options, _priv = pod("containerd", False, (False, False))
    cg = evaluate(_view(members, cgroup2=False), [("cgroup", "host")]).results[0]
    assert cg.ok and len(cg.evidence) == 3 and not cg.apart and cg.apart_reason == ""


def test_check_cgroup_private_fails_when_privileged():
    members, _options, priv = pod("containerd", True, (True, False))
    cg = evaluate(_view(members, priv=priv), [("cgroup", "private")]).results[0]
    assert not cg.ok and cg.actual == "mixed" and "privileged" in cg.hint


def test_privileged_ids_from_verbose_info():
    from nsinspect.cri.info import VerboseInfo

    a, b, c = (member(n, APP, None) for n in "abc")
    raw = [(a, VerboseInfo(1, {}, {}, "", True), 0), (b, VerboseInfo(2, {}, {}, "", False), 0), (c, None, 0)]
    assert privileged_ids(raw) == {"id-a"}
