"""GetNode's rows in columns (``NodeColumns``): every field of a row survives the trip, and an answer whose columns
do not add up is refused in one sentence (exit 4), never turned into wrong rows or a traceback."""

from __future__ import annotations

import pytest

from nsinspect.agent import convert
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.errors import Unavailable
from nsinspect.model import (
    ContainerRef,
    Namespace,
    NamespaceId,
    NodeView,
    NsFd,
    NsMount,
    PodRef,
    Process,
    ProcessId,
    ScanStats,
)

USERNS = NamespaceId(4, 4026531837)
SHARED = Process(ProcessId(7, 99), 1, 0, "root", "pause", "/pause")


def view() -> NodeView:
    """Rows with every kind of value a column carries: no process, a shared lowest process, an unknown uid, a parent
    that is a row and one that is not, owners, several pods, containers, mounts and fds on one row, strings a
    terminal must not get raw, and a parent of ino 0 (a row message may say so; columns keep it)."""
    odd = Process(ProcessId(2**40, 2**63 - 1), -3, None, "", "a\x1b[31m\n", "x\x00y \u202e")
    user = Namespace(USERNS, "user", 3, 1, SHARED, True)
    child = NamespaceId(4, 4026532000)
    return NodeView(
        [
            user,
            Namespace(NamespaceId(4, 4026531836), "pid", 2, 7, SHARED, False, (PodRef("lab", "a", "u1"), PodRef("lab", "b", "u2")),
                      (ContainerRef("web", "c1"), ContainerRef("log", "c2")), parent=child, owner=USERNS),
            Namespace(NamespaceId(4, 4026532001), "net", 0, 0, None, False, mounts=(NsMount("/run/netns/x\n", 4026531841),
                      NsMount("/var/run/netns/x", 4026531841)), fds=(NsFd(9, 3), NsFd(9, 4), NsFd(10, 0)), owner=child),
            Namespace(NamespaceId(4, 4026532002), "mnt", 1, 2**40, odd, False, parent=NamespaceId(9, 0)),
            Namespace(child, "time", 5, 12, None, False),  # nprocs but no process: it vanished before it was read
            Namespace(NamespaceId(0, 0), "cgroup", 1, 7, SHARED, True, containers=(ContainerRef("", ""),)),
        ],
        {"user": USERNS}, ScanStats(6, 1, (5,), True, 2, ((4026532003, 9, 5),)), ("user", "pid", "net", "mnt", "time", "cgroup"),
        "node-1", "containerd 2.1.9", "",
    )


def wire(message: pb.NodeView) -> NodeView:
    return convert.from_node(pb.NodeView.FromString(message.SerializeToString()))


def test_every_field_survives_columns():
    v = view()
    message = convert.to_node(v, columns=True)
    assert not message.namespaces and len(message.columns.ino) == len(v.namespaces)
    assert len(message.columns.proc_pid) == 2  # the shared lowest process is one entry of the table
    assert wire(message) == v == wire(convert.to_node(v))
    empty = v._replace(namespaces=[])
    assert wire(convert.to_node(empty, columns=True)) == empty


def test_rows_from_an_older_agent_are_read_as_before():
    """A client asks for columns; an agent older than the field sends rows, and the client reads them."""
    assert wire(convert.to_node(view(), columns=False)) == view()


def spoil(how):
    message = convert.to_node(view(), columns=True)
    how(message)
    return pb.NodeView.FromString(message.SerializeToString())


@pytest.mark.parametrize("how", [
    lambda m: m.columns.dev.append(1),  # a row column longer than the others
    lambda m: m.columns.node.pop(),  # one shorter
    lambda m: m.columns.type.__setitem__(0, 6),  # no such type name
    lambda m: m.columns.process.__setitem__(0, 2),  # no such process
    lambda m: m.columns.process.__setitem__(0, -2),  # below "none"
    lambda m: m.columns.proc_comm.pop(),  # the process table's columns of different lengths
    lambda m: m.columns.proc_uid_unknown.append(2),  # an unknown uid of a process that is not there
    lambda m: m.columns.pod_row.__setitem__(0, 6),  # an entry for a row that is not there
    lambda m: m.columns.mount_path.pop(),  # a sparse group of different lengths
    lambda m: (m.columns.parent_row.append(1), m.columns.parent_dev.append(1), m.columns.parent_ino.append(2)),  # two parents
    lambda m: m.namespaces.add(type="net"),  # rows and columns both
], ids=["long", "short", "type", "process", "negative", "table", "uid", "row", "sparse", "two-parents", "both"])
def test_columns_that_do_not_add_up_are_refused(how):
    with pytest.raises(Unavailable) as e:
        convert.from_node(spoil(how))
    text = str(e.value)
    assert text.startswith("the nsinspect agent answered a node view") and "\n" not in text
    assert text.endswith("check that client and agent are nsinspect") and e.value.exit_code == 4
