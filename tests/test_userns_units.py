"""User namespaces without a runtime: id maps as /proc writes them, who root is on the node, the user
verdict's evidence, and a fixture /proc with and without the map files."""

from __future__ import annotations

import pytest
from helpers import NS_TYPES, make_proc

from nsinspect import sharing
from nsinspect.model import IdRange, Member, NamespaceId, Process, ProcessId, outside_id
from nsinspect.node import pods
from nsinspect.node.procfs import ProcFS, parse_id_map

POD = (IdRange(0, 65536, 65536),)
NODE_MAP = (IdRange(0, 0, 4294967295),)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"         0      65536      65536\n", POD),  # the kernel pads each column to 10
        (b"         0          0 4294967295\n", NODE_MAP),
        (b"0 100000 1000\n1000 1000 1\n1001 101001 64535\n", (IdRange(0, 100000, 1000), IdRange(1000, 1000, 1), IdRange(1001, 101001, 64535))),
        (b"", ()),  # a user namespace whose map is not written yet
        (b"0 x 1\n0 1\n", ()),  # nothing half-parsed
    ],
)
def test_parse_id_map(data, expected):
    assert parse_id_map(data) == expected


@pytest.mark.parametrize(
    "ranges, inside, expected",
    [
        (POD, 0, 65536),
        (POD, 65535, 131071),
        (POD, 65536, None),  # past the range: unmapped (the overflow id inside)
        (NODE_MAP, 0, 0),
        ((IdRange(1000, 1000, 1), IdRange(0, 100000, 1000)), 1000, 1000),
        ((IdRange(1000, 1000, 1),), 0, None),
        ((), 0, None),
    ],
)
def test_outside_id(ranges, inside, expected):
    assert outside_id(ranges, inside) == expected


def member(name, uid_map=POD, gid_map=POD):
    return Member(name, "app", name, "running", Process(ProcessId(1, 1), 0, 0, "root", "sleep", ""),
                  {"user": NamespaceId(4, 7)}, uid_map=uid_map, gid_map=gid_map)


@pytest.mark.parametrize(
    "members, requested, expected",
    [
        ([member("pause"), member("app")], (POD, POD),
         "root in the pod is uid 65536 on the node (uid_map 0 65536 65536; gid_map 0 65536 65536)"),
        ([member("pause")], ((), ()),  # a runtime that does not echo the request
         "root in the pod is uid 65536 on the node (uid_map 0 65536 65536; gid_map 0 65536 65536)"),
        ([member("pause")], ((IdRange(0, 131072, 65536),), (IdRange(0, 131072, 65536),)),
         "root in the pod is uid 65536 on the node (uid_map 0 65536 65536; gid_map 0 65536 65536), "
         "but the runtime was asked for uid_map 0 131072 65536; gid_map 0 131072 65536"),
        ([member("pause", gid_map=(IdRange(0, 200000, 65536),))], ((), ()),
         "root in the pod is uid 65536, gid 200000 on the node (uid_map 0 65536 65536; gid_map 0 200000 65536)"),
        ([member("pause", uid_map=(IdRange(1000, 70000, 1),))], ((), ()),
         "uid 0 is not mapped in the pod (uid_map 1000 70000 1; gid_map 0 65536 65536)"),
        ([member("pause"), member("app", NODE_MAP, NODE_MAP)], (POD, POD),
         "the members' id maps differ: pause: uid_map 0 65536 65536, gid_map 0 65536 65536; "
         "app: uid_map 0 0 4294967295, gid_map 0 0 4294967295"),
        ([member("pause", (), ())], (POD, POD), ""),  # maps not readable: no evidence rather than a guess
    ],
)
def test_user_evidence(members, requested, expected):
    assert sharing.user_evidence(members, requested) == expected


def test_verdict_carries_evidence_only_outside_the_node():
    node_ns = {t: NamespaceId(4, 100 + i) for i, t in enumerate(NS_TYPES)}
    own = {t: NamespaceId(4, 900 + i) for i, t in enumerate(NS_TYPES)}
    in_pod = [member("pause")._replace(namespaces=own), member("app")._replace(namespaces=dict(own, mnt=NamespaceId(4, 5)))]
    v = sharing.verdicts(in_pod, {"userns": "POD", "pid": "CONTAINER"}, node_ns, sharing.Node(), (POD, POD))["user"]
    assert (v.actual, v.expected, v.ok) == ("shared", "shared", True) and v.evidence.startswith("root in the pod is uid 65536")
    on_node = [m._replace(namespaces=dict(m.namespaces, user=node_ns["user"]), uid_map=NODE_MAP, gid_map=NODE_MAP) for m in in_pod]
    v = sharing.verdicts(on_node, {"userns": "NODE"}, node_ns, sharing.Node())["user"]
    assert (v.actual, v.expected, v.evidence) == ("host", "host", "")


def test_maps_read_from_proc_and_absent_without_user_namespaces(tmp_path):
    root = tmp_path / "proc"
    links = {t: 4026531830 + i for i, t in enumerate(NS_TYPES)}
    make_proc(root, 10, links, comm="pause")
    make_proc(root, 11, links, comm="app")
    (root / "10" / "uid_map").write_bytes(b"         0      65536      65536\n")
    (root / "10" / "gid_map").write_bytes(b"         0      65536      65536\n")
    proc = ProcFS(str(root))
    assert proc.id_maps(10) == (POD, POD)
    process, namespaces, maps = pods._namespaces(proc, 10)
    assert process.pid == 10 and maps == {"uid_map": POD, "gid_map": POD}
    # pid 11 has no map files (a kernel without CONFIG_USER_NS): still a running member, without maps.
    process, namespaces, maps = pods._namespaces(proc, 11)
    assert process.pid == 11 and set(namespaces) == set(NS_TYPES) and maps == {"uid_map": (), "gid_map": ()}
