"""model -> protobuf -> bytes -> protobuf -> model gives back the same model, for real views."""

from __future__ import annotations

import os

import pytest
from helpers import require_root

from nsinspect.agent import convert
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.node.engine import LocalEngine

pytestmark = pytest.mark.runtime


def through_the_wire(to, message_type, frm, view):
    return frm(message_type.FromString(to(view).SerializeToString()))


@pytest.fixture(scope="module")
def engine(ctrd):
    e = LocalEngine(runtime_endpoint=ctrd.endpoint, parallel=False)
    yield e
    e.close()


def test_pod_views_round_trip(ctrd, engine):
    for name in ctrd.pods:
        for detail, details in ((False, False), (True, False), (False, True)):
            view = engine.pod(name, "lab", detail=detail, details=details)
            # With details, the evidence sentences are not on the wire: the rules make them again, the same.
            assert through_the_wire(convert.to_pod, pb.PodView, convert.from_pod, view) == view, name
            assert details == any(m.details is not None for m in view.members), name
    pods = engine.pods()
    assert len(pods.pods) >= len(ctrd.pods)
    assert through_the_wire(convert.to_pods, pb.PodList, convert.from_pods, pods) == pods


def test_node_and_process_views_round_trip(ctrd, engine):
    require_root()
    node = engine.node()
    assert any(n.pods for n in node.namespaces) and node.runtime
    assert through_the_wire(convert.to_node, pb.NodeView, convert.from_node, node) == node
    in_columns = pb.NodeView.FromString(convert.to_node(node, columns=True).SerializeToString())
    assert not in_columns.namespaces and convert.from_node(in_columns) == node
    web = next(m for m in engine.pod("namespace-demo", "lab").members if m.name == "web")
    for pid in (os.getpid(), web.pid):
        view = engine.process(pid)
        assert through_the_wire(convert.to_process, pb.ProcessView, convert.from_process, view) == view
    assert engine.process(web.pid).container.name == "web"


def test_the_node_encoder_answers_what_to_node_answers(ctrd, engine):
    """GetNode's encoder (each row's encoding kept from the last answer) gives the message to_node gives: on a first
    answer, on the same answer again, and on one where rows changed, came and went."""
    encoder = convert.NodeEncoder()
    node = engine.node()
    first = encoder.encode(node)
    assert first == convert.to_node(node)
    assert encoder.encode(node) is first  # the same view: the same message
    rows = node.namespaces
    changed = node._replace(namespaces=[rows[0]._replace(nprocs=rows[0].nprocs + 7), *rows[2:], rows[1]._replace(pid=1)])
    assert encoder.encode(changed) == convert.to_node(changed)
    assert convert.from_node(pb.NodeView.FromString(encoder.encode(changed).SerializeToString())) == changed
    empty = node._replace(namespaces=[])
    assert encoder.encode(empty) == convert.to_node(empty)
    # In columns: the same answer is the same message; another answer is to_node's in columns.
    for view in (node, changed, empty):
        got = encoder.encode(view, columns=True)
        assert got == convert.to_node(view, columns=True) and encoder.encode(view, columns=True) is got
        assert convert.from_node(pb.NodeView.FromString(got.SerializeToString())) == view
