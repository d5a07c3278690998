#!/usr/bin/env python3
"""Regenerate the Python code of every .proto under proto/ into the package, or check it.

  python3 scripts/gen_protos.py           # write nsinspect/**/*_pb2.py, *_pb2_grpc.py, *.pyi
  python3 scripts/gen_protos.py --check   # exit 1 if the committed code differs from a fresh generation

The path of a .proto under proto/ is the Python module path of its code:
proto/nsinspect/cri/v1/api.proto -> nsinspect/cri/v1/api_pb2.py.  Generated code is never edited by hand.
Uses grpcio-tools (pinned in pyproject's test extra, so every machine generates the same bytes).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def generate(out: Path) -> list[Path]:
    protos = sorted(PROTO.rglob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
        f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}",
        *[str(p) for p in protos],
    ]
    subprocess.run(cmd, check=True)
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.name.endswith(SUFFIXES))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = generate(tmp)
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / "nsinspect").rglob("*") if p.name.endswith(SUFFIXES))
        if args.check:
            drift = [str(f) for f in files if not (ROOT / f).exists() or not filecmp.cmp(tmp / f, ROOT / f, shallow=False)]
            drift += [str(f) for f in committed if f not in files]
            if drift:
                print("generated protobuf code is out of date: " + ", ".join(drift) +
                      "; run python3 scripts/gen_protos.py and commit the result.", file=sys.stderr)
                return 1
            print(f"generated protobuf code is up to date ({len(files)} files)")
            return 0
        for f in committed:
            if f not in files:
                (ROOT / f).unlink()
        for f in files:
            (ROOT / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp / f, ROOT / f)
            print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
