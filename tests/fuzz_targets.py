"""Fuzz targets: one function per door that reads input others control (docs/fuzzing.md).

Each target takes bytes and raises AssertionError (or any unexpected exception) when the property
breaks: any input ends in a valid answer, or in one sentence with the contract's exit code (a gRPC
status at the agent); never 70, never unescaped control bytes, and C and Python agree.  The same
functions are driven three ways: by atheris, coverage-guided (scripts/fuzz.py, bounded in CI), by
hypothesis (tests/test_fuzz.py), and by the committed corpus and crashes replayed on every run.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:  # run by scripts/fuzz.py as well as by pytest
    sys.path.insert(0, str(_HERE.parent))

from nsinspect.errors import NsinspectError  # noqa: E402
from nsinspect.limits import INODE_MAX, PID_MAX_LIMIT  # noqa: E402
from nsinspect.model import NS_TYPES  # noqa: E402

# What a terminal must never receive from untrusted text: C0 (but newline), DEL, C1, bidi controls.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CONTRACT_EXITS = {0, 2, 3, 4, 5}  # PRODUCT.md's exit codes an answer or an error may end in (1 is check's)


class Data:
    """Input bytes taken apart as a fuzzer's data provider does: small choices first, then the rest."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        return self.byte() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def chunk(self, limit: int = 64) -> bytes:
        """A length-prefixed piece (length from one byte, at most ``limit``)."""
        n = min(self.byte(), limit)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def text(self, limit: int = 64) -> str:
        return self.chunk(limit).decode("utf-8", "surrogateescape")

    def utf8(self, limit: int = 64) -> str:
        """A piece as valid UTF-8 (what a protobuf string can carry)."""
        return self.chunk(limit).decode("utf-8", "replace")

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


def clean_terminal_text(text: str, what: str) -> None:
    bad = _CONTROL.search(text)
    assert bad is None, f"{what} carries the raw control character {bad.group()!r}: {text[:300]!r}"


# -- the command line, in this process ------------------------------------------------------------
def run_cli(args: list[str], pure: bool = False) -> tuple[int, str, str]:
    """``nsinspect ARGS`` in this process, as the console script runs it: (exit code, stdout, stderr).
    stdout and stderr are strict UTF-8, as a UTF-8 locale's are.  ``pure``: without the C speed-up."""
    import nsinspect.cli
    from nsinspect.node import procfs

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="\n")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="\n")
    saved = procfs._c
    procfs._c = None if pure else saved
    code = 70
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                nsinspect.cli.main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        procfs._c = saved
        gc.enable()  # the one-shot CLI disables the collector
    out.flush()
    err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()  # type: ignore[attr-defined]


def check_outcome(code: int, out: str, err: str, what: str) -> None:
    assert code in CONTRACT_EXITS, f"{what}: exit {code} ({err.strip()[:300]!r})"
    clean_terminal_text(out, f"{what}: stdout")
    clean_terminal_text(err, f"{what}: stderr")
    if code != 0:  # one sentence; a usage error's is click's last line, after its usage lines
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and "Traceback" not in err, f"{what}: no sentence on stderr, or a traceback: {err[:400]!r}"
        if code != 2:
            assert len(lines) == 1, f"{what}: more than one sentence on stderr: {err[:400]!r}"
        assert out == "", f"{what}: an error wrote to stdout too"


# -- a procfs tree made from the input ----------------------------------------------------------------
_PID_NAMES = ["2", "15", "300", str(PID_MAX_LIMIT), str(PID_MAX_LIMIT + 1), "0", "007", "\u0663", " 1", "self", "1_0"]
_INOS = [4026531835, 4026531836, 4026532500, INODE_MAX, INODE_MAX + 1, 0, 99999999999999999999999999]
_NUMBERS = [b"0", b"1", b"2", b"15", b"4194304", b"4194305", b"-1", b"+1", b"\xd9\xa3", b"99999999999999999999999", b"1_0", b""]


def _ns_target(d: Data, t: str) -> str:
    kind = d.below(6)
    if kind == 0:
        return d.text(40).replace("\0", "") or f"{t}:["
    if kind == 1:
        return f"{d.pick(NS_TYPES)}:[{d.pick(_INOS)}]"
    return f"{t}:[{d.pick(_INOS[:3]) if kind < 5 else d.pick(_INOS)}]"


def _stat(d: Data, pid: str) -> bytes:
    if d.below(4) == 0:
        return d.chunk(200)
    comm = d.chunk(24)
    fields = [d.pick([b"S", b"R", b"Z", b"", b"\x1b"])] + [d.pick(_NUMBERS) if d.below(3) == 0 else b"1" for _ in range(20)]
    if d.below(4) == 0:
        fields = fields[: d.below(22)]
    return pid.encode("utf-8", "surrogateescape") + b" (" + comm + b") " + b" ".join(fields) + b"\n"


def _mountinfo(d: Data) -> bytes:
    lines = []
    for _ in range(d.below(4)):
        if d.below(3) == 0:
            lines.append(d.chunk(120))
            continue
        root = _ns_target(d, d.pick(NS_TYPES)).encode("utf-8", "surrogateescape")
        point = b"/run/" + d.chunk(20).replace(b" ", b"\\040").replace(b"\n", b"\\012")
        mid = d.pick([b"30", b"31", b"x", b"99999999999999999999"])
        lines.append(mid + b" 25 0:4 " + root + b" " + point + b" rw shared:1 - nsfs nsfs rw")
    return b"\n".join(lines) + b"\n"


def make_tree(d: Data, root: Path) -> list[str]:
    """A fixture procfs from the input: pids whose every file may be well formed, odd, or garbage."""
    root.mkdir()
    names = ["1"]
    for _ in range(d.below(4)):
        name = d.pick(_PID_NAMES)
        if name not in names:
            names.append(name)
    for name in names:
        p = root / name
        if name == "self":
            (root / "self").symlink_to("1")
            continue
        p.mkdir()
        shape = d.below(8) if name != "1" else 7
        if shape == 0:
            (p / "ns").write_bytes(d.chunk(8))  # a regular file where a directory should be
        elif shape == 1:
            pass  # no ns at all
        else:
            (p / "ns").mkdir()
            for t in NS_TYPES:
                if name == "1":
                    os.symlink(f"{t}:[{4026531835 + NS_TYPES.index(t)}]", p / "ns" / t)
                    continue
                how = d.below(8)
                if how == 0:
                    continue
                if how == 1:
                    (p / "ns" / t).mkdir()
                else:
                    os.symlink(_ns_target(d, t), p / "ns" / t)
        (p / "stat").write_bytes(_stat(d, name) if name != "1" else b"1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0\n")
        for f in ("status", "cgroup", "uid_map", "gid_map", "cmdline", "comm"):
            if d.below(3) == 0:
                (p / f).write_bytes(d.chunk(80))
        if d.below(2) == 0:
            (p / "mountinfo").write_bytes(_mountinfo(d))
        if d.below(3) == 0:
            (p / "fd").mkdir()
            for i in range(d.below(4)):
                os.symlink(_ns_target(d, d.pick(NS_TYPES)) if d.below(2) else d.text(30).replace("\0", "") or "x", p / "fd" / str(3 + i))
    return names


@contextlib.contextmanager
def scratch():
    """A fresh directory on tmpfs (each input's tree is written and thrown away)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    d = tempfile.mkdtemp(prefix="nsinspect-fuzz-", dir=base)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def proc_tree(data: bytes) -> None:
    """``node``, ``pid`` and ``node -t`` over a procfs made from the input, in C and in Python, to a table and JSON."""
    d = Data(data)
    with scratch() as tmp:
        names = make_tree(d, tmp / "proc")
        proc = str(tmp / "proc")
        pid = d.pick(names)
        types = [a for t in NS_TYPES if d.below(2) for a in ("-t", t)]
        for args in (["node", "-o", "json"], ["node", *types], ["pid", pid, "-o", "json"], ["pid", pid]):
            full = ["--proc", proc, *args]
            fast = run_cli(full)
            check_outcome(*fast, what=" ".join(args))
            pure = run_cli(full, pure=True)
            assert fast[:2] == pure[:2], f"{args}: C and Python disagree:\nC: {fast}\npython: {pure}"
            if fast[0] == 0 and "json" in args:
                _check_json(json.loads(fast[1]))


def _check_json(doc: object) -> None:
    """Every number an answer carries is one the kernel can produce."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("ns", "inode", "ino", "pns", "ons") or k.endswith("pid"):
                assert v is None or isinstance(v, int) and 0 <= v <= INODE_MAX, f"{k} = {v!r} out of range"
            _check_json(v)
    elif isinstance(doc, list):
        for v in doc:
            _check_json(v)


# -- the procfs file parsers, one by one -------------------------------------------------------------
def procfs_files(data: bytes) -> None:
    """Each parser of a /proc file: only its documented failure, values within the kernel's ranges."""
    from nsinspect.node import evidence, hidden, procfs

    d = Data(data)
    kind, raw = d.below(10), d.rest()
    text = raw.decode("utf-8", "surrogateescape")
    if kind == 0:
        try:
            comm, state, ppid, start = procfs.parse_stat(raw)
        except (ValueError, IndexError):
            return
        assert 0 <= ppid <= PID_MAX_LIMIT and 0 <= start <= INODE_MAX and isinstance(comm, str) and isinstance(state, str)
    elif kind == 1:
        for t in NS_TYPES:
            ino = procfs.parse_ns_link(text, t)
            assert ino is None or 0 <= ino <= INODE_MAX
            found = hidden.parse_ns_target(text, NS_TYPES)
            assert found is None or 0 <= found[1] <= INODE_MAX, found
    elif kind == 2:
        for r in procfs.parse_id_map(raw):
            assert all(0 <= v < 1 << 32 for v in (r.inside, r.outside)) and 0 < r.length < 1 << 32, r
    elif kind == 3:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in procfs.parse_cgroup(raw).items())
    elif kind == 4:
        for t, ino, point in hidden.parse_nsfs_mounts(raw, NS_TYPES):
            assert t in NS_TYPES and 0 <= ino <= INODE_MAX and isinstance(point, str)
    elif kind == 5:
        for m in evidence.parse_mountinfo(raw):  # raw text in the model: the renderers escape it (proc_tree checks)
            assert all(isinstance(f, str) for f in m)
            "".join(m).encode("utf-8")
    elif kind == 6:
        evidence.parse_net_dev(raw)
        evidence.ipv4_addresses(raw, raw)
        evidence.parse_if_inet6(raw)
    elif kind == 7:
        for k in ("shm", "sem", "msg"):
            evidence.parse_sysvipc(k, text)
    elif kind == 8:
        name, nspid = evidence.parse_status_nspid(raw)
        assert nspid is None or 0 < nspid <= PID_MAX_LIMIT, nspid
    else:
        mnt_id, ino = hidden.parse_fdinfo(raw)
        assert ino is None or 0 <= ino <= INODE_MAX


# -- the kubeconfig loader and exec-plugin answers ------------------------------------------------------
def kubeconfig(data: bytes) -> None:
    """A kubeconfig file from the input: resolved, or one InvalidArgument sentence (exit 2), nothing else."""
    from nsinspect.cluster import kubeconfig as kc

    d = Data(data)
    context = d.text(16) if d.below(4) == 0 else None
    body = d.rest()
    with scratch() as tmp:
        path = tmp / "config"
        path.write_bytes(body)
        try:
            out = kc.resolve([str(path)], context=context)
        except NsinspectError as e:
            assert e.exit_code == 2, (type(e).__name__, str(e))
            _one_sentence(str(e))
            return
    assert out.server, out


def exec_answer(data: bytes) -> None:
    """What an exec credential plugin prints: credentials, or one InvalidArgument sentence."""
    from nsinspect.cluster import kubeconfig as kc

    d = Data(data)
    api = d.pick(kc.EXEC_VERSIONS)
    out = kc.Resolved(context="c", namespace="default", server="https://k")
    try:
        kc.take_credential(out, d.rest(), api, "plugin", "user")
    except NsinspectError as e:
        assert e.exit_code == 2, (type(e).__name__, str(e))
        _one_sentence(str(e))
        return
    assert (out.authorization or "").startswith("Bearer ") or out.cert_data


def _one_sentence(message: str) -> None:
    """An error's sentence as the command line writes it (escaped: a server URL from a kubeconfig may hold anything)."""
    from nsinspect.render.text import safe

    assert message.strip() and "Traceback" not in message, message
    clean_terminal_text(safe(message), "an error")


# -- the CRI verbose-info reducer ------------------------------------------------------------------------
def cri_info(data: bytes) -> None:
    """Verbose info as a runtime sends it (any JSON, or not JSON): reduced, never raised."""
    from nsinspect.cri import info

    d = Data(data)
    raw = d.rest().decode("utf-8", "replace")
    for doc in (raw, _as_json_shape(raw)):
        v = info.parse({"info": doc})
        assert isinstance(v.pid, int) and v.pid >= 0
        for path in v.spec_namespaces.values():
            info.joined_pid(path)


def _as_json_shape(raw: str) -> str:
    """The input dressed as CRI's verbose info, so the fuzzer reaches past json.loads often."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return json.dumps({"pid": value, "privileged": value, "runtimeSpec": {"linux": {"namespaces": value if isinstance(value, list)
                      else [{"type": "network", "path": value}, {"type": "pid", "path": value}]}},
                       "config": {"linux": {"security_context": {"namespace_options": value, "privileged": value}}}})


# -- agent messages: converted and back ---------------------------------------------------------------------
def convert(data: bytes) -> None:
    """Any bytes a client receives as an answer (a node view's rows or columns): parsed, converted to the model and back
    to the same model, through rows and through columns."""
    from google.protobuf.message import DecodeError

    from nsinspect.agent import convert as cv
    from nsinspect.agent.v1 import agent_pb2 as pb

    d = Data(data)
    which = d.below(4)
    cls, to, back = ((pb.PodView, cv.from_pod, cv.to_pod), (pb.NodeView, cv.from_node, cv.to_node),
                     (pb.ProcessView, cv.from_process, cv.to_process), (pb.PodList, cv.from_pods, cv.to_pods))[which]
    try:
        msg = cls.FromString(d.rest())
    except DecodeError:
        return
    try:
        model = to(msg)
    except NsinspectError as e:
        _one_sentence(str(e))
        return
    assert to(back(model)) == model, "a round trip through the agent's messages changed the answer"
    if which == 1:  # a node view: in columns too (GetNode's answer to a client that asks for them)
        assert to(pb.NodeView.FromString(cv.to_node(model, columns=True).SerializeToString())) == model, \
            "a round trip through the node view's columns changed the answer"


# -- the port-forward stream ----------------------------------------------------------------------------------
def portforward(data: bytes) -> None:
    """API-server frames: split into channels, or StreamError (one sentence); the port prefix checked."""
    from nsinspect.cluster.tunnel import Channels, StreamError

    d = Data(data)
    ch = Channels(d.pick([9870, 0, 65535]), base64_framing=bool(d.below(2)))
    for _ in range(d.below(6) + 1):
        try:
            channel, payload = ch.feed(d.chunk(40))
        except StreamError as e:
            _one_sentence(str(e))
            return
        assert 0 <= channel <= 255 and isinstance(payload, bytes)


# -- text that reaches a terminal -------------------------------------------------------------------------------
def escape(data: bytes) -> None:
    """Any process name or label, after escaping, carries no control character and keeps its printable text."""
    from nsinspect.node.evidence import clean
    from nsinspect.render.text import safe

    s = data.decode("utf-8", "surrogateescape")
    out = safe(s)
    clean_terminal_text(out, "safe")
    out.encode("utf-8")  # strict: a terminal is written UTF-8
    clean(s).encode("utf-8")  # what crosses the agent's wire is UTF-8
    clean_terminal_text(safe(clean(s)), "safe(clean())")


# -- the agent's requests ----------------------------------------------------------------------------------------
class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(code, details)
        self.code, self.details = code, details


class _Context:
    """The part of grpc.ServicerContext the agent's methods use: abort raises, as gRPC's does."""

    def abort(self, code, details):
        raise Aborted(code, details)

    def set_trailing_metadata(self, md):
        self.trailing = md


_agent: dict[str, object] = {}


def _handlers():
    """The agent's method handlers as its server registers them (bytes in), over an engine that reads a
    fixture procfs and a runtime socket nobody listens on; made once per process."""
    if not _agent:
        import grpc

        from nsinspect.agent import server
        from nsinspect.node.cached import CachedEngine

        tmp = Path(tempfile.mkdtemp(prefix="nsinspect-fuzz-agent-"))
        proc = tmp / "proc"
        d = Data(bytes(range(7, 200)))
        make_tree(d, proc)
        engine = CachedEngine(str(proc), f"unix://{tmp}/no-runtime.sock", str(tmp), parallel=False, ttl=60)
        inspector = server.Inspector(engine)
        registered: dict[str, object] = {}

        class _Server:
            def add_generic_rpc_handlers(self, handlers):
                pass

            def add_registered_method_handlers(self, service, handlers):
                registered.update(handlers)

        server._add_inspector(_Server(), inspector)
        _agent.update(grpc=grpc, handlers=registered, inspector=inspector)
    return _agent


def agent_request(data: bytes) -> None:
    """Any bytes as a request to any of the agent's methods: an answer, or a status a client's request may earn
    (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, PERMISSION_DENIED) with one sentence; never INTERNAL."""
    from nsinspect.agent.v1 import agent_pb2 as pb

    agent = _handlers()
    grpc = agent["grpc"]
    d = Data(data)
    name = d.pick(["GetNode", "GetProcess", "ListPods", "GetPod"])
    if d.below(2):  # a well-formed message with fuzzed fields, so validation is reached often
        msg = {"GetNode": lambda: pb.GetNodeRequest(types=[d.utf8(12) for _ in range(d.below(3))]),
               "GetProcess": lambda: pb.GetProcessRequest(pid=int.from_bytes(d.chunk(4), "little")),
               "ListPods": lambda: pb.ListPodsRequest(namespace=d.utf8(20)),
               "GetPod": lambda: pb.GetPodRequest(name=d.utf8(40), namespace=d.utf8(20), uid=d.utf8(20), container=d.utf8(20),
                                                  detail=bool(d.below(2)))}[name]()
        raw = msg.SerializeToString()
    else:
        raw = d.rest()
    handler = agent["handlers"][name]
    try:
        handler.unary_unary(raw, _Context())
    except Aborted as e:
        allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                   grpc.StatusCode.PERMISSION_DENIED}
        assert e.code in allowed, f"{name}: {e.code} {e.details!r}"
        _one_sentence(e.details)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "proc_tree": proc_tree,
    "procfs_files": procfs_files,
    "kubeconfig": kubeconfig,
    "exec_answer": exec_answer,
    "cri_info": cri_info,
    "convert": convert,
    "portforward": portforward,
    "escape": escape,
    "agent_request": agent_request,
}
