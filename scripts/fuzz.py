#!/usr/bin/env python3
"""Coverage-guided fuzzing of nsinspect's input doors with atheris (docs/fuzzing.md).

    python3 scripts/fuzz.py [--seconds 20] [TARGET...]          # bounded, as CI runs it (every target)
    python3 scripts/fuzz.py --seconds 3600 --keep proc_tree      # longer; new coverage kept in the corpus
    python3 scripts/fuzz.py --list

Each target (tests/fuzz_targets.py) runs in its own process, starting from its committed corpus
(tests/fuzz/corpus/TARGET) copied to a scratch directory, so a bounded run changes nothing in the
checkout unless --keep is given.  A crash (an exception, a broken property, a time-out, memory past
the limit) is minimized by libFuzzer, saved as tests/fuzz/crashes/TARGET/crash-HASH (commit it:
tests/test_fuzz.py replays every one), and the run exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
PER_INPUT_TIMEOUT = 20  # seconds: a hang is a finding
RSS_LIMIT_MB = 2048


def _child(target: str) -> None:
    """In the fuzzing process (NSINSPECT_FUZZ_TARGET set): instrument nsinspect, then hand the target and this
    command line to libFuzzer.  libFuzzer runs this script again for some jobs (a merge), hence the environment."""
    import atheris

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    with atheris.instrument_imports(include=["nsinspect"]):
        import nsinspect.agent.convert  # noqa: F401  -- every module a target reaches, instrumented
        import nsinspect.agent.server  # noqa: F401
        import nsinspect.cli  # noqa: F401
        import nsinspect.cluster.kubeconfig  # noqa: F401
        import nsinspect.cluster.tunnel  # noqa: F401
        import nsinspect.cri.info  # noqa: F401
        import nsinspect.node.cached  # noqa: F401
        import nsinspect.node.engine  # noqa: F401
        import nsinspect.node.evidence  # noqa: F401
        import nsinspect.node.hidden  # noqa: F401
        import nsinspect.render.data  # noqa: F401
        import nsinspect.render.table  # noqa: F401
        import nsinspect.render.text  # noqa: F401
    import fuzz_targets

    atheris.Setup(sys.argv, fuzz_targets.TARGETS[target])
    atheris.Fuzz()


def _fuzzer(target: str, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, __file__, *args], env=dict(os.environ, NSINSPECT_FUZZ_TARGET=target),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", **kw)


def run(target: str, seconds: int, keep: bool) -> bool:
    corpus_dir = FUZZ / "corpus" / target
    crash_dir = FUZZ / "crashes" / target
    with tempfile.TemporaryDirectory(prefix=f"nsinspect-fuzz-{target}-") as tmp:
        work, found = Path(tmp) / "corpus", Path(tmp) / "found"
        found.mkdir()
        shutil.copytree(corpus_dir, work) if corpus_dir.is_dir() else work.mkdir()
        before = {p.name for p in work.iterdir()}
        r = _fuzzer(target, str(work), f"-max_total_time={seconds}", f"-timeout={PER_INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}",
                    f"-artifact_prefix={found}/", "-print_final_stats=1")
        stats = [line for line in r.stdout.splitlines() if line.startswith(("stat::number_of_executed_units", "stat::peak_rss_mb"))]
        new = [p for p in work.iterdir() if p.name not in before]
        print(f"{target}: exit {r.returncode}, {len(before)} corpus inputs + {len(new)} new; "
              + ", ".join(s.split("::", 1)[1].replace(":", " =").strip() for s in stats), flush=True)
        if keep:  # a minimal corpus with the same coverage replaces the committed one
            merged = Path(tmp) / "merged"
            merged.mkdir()
            m = _fuzzer(target, "-merge=1", str(merged), str(work))
            if m.returncode != 0 or not any(merged.iterdir()):
                print(f"  merge failed (corpus left as it was):\n{m.stdout[-2000:]}")
                return False
            shutil.rmtree(corpus_dir, ignore_errors=True)
            shutil.copytree(merged, corpus_dir)
            print(f"  corpus {corpus_dir.relative_to(ROOT)}: {len(list(merged.iterdir()))} inputs (merged)")
        artifacts = list(found.iterdir())
        if r.returncode == 0 and not artifacts:
            return True
        crash_dir.mkdir(parents=True, exist_ok=True)
        for p in artifacts:
            shutil.copy(p, crash_dir / p.name)
            print(f"  FOUND: {crash_dir.relative_to(ROOT) / p.name} (commit it; tests/test_fuzz.py replays it)")
        print("\n".join("  | " + line for line in r.stdout.splitlines()[-40:]))
        return False


def main() -> int:
    if os.environ.get("NSINSPECT_FUZZ_TARGET"):
        _child(os.environ["NSINSPECT_FUZZ_TARGET"])
        return 0
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    import fuzz_targets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", metavar="TARGET", help="default: every target")
    ap.add_argument("--seconds", type=int, default=20, help="per target (default 20)")
    ap.add_argument("--keep", action="store_true", help="add the inputs that found new coverage to the committed corpus")
    ap.add_argument("--list", action="store_true", help="list the targets and what each one fuzzes")
    args = ap.parse_args()
    if args.list:
        for name, fn in fuzz_targets.TARGETS.items():
            print(f"{name:14} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    unknown = [t for t in args.targets if t not in fuzz_targets.TARGETS]
    if unknown:
        print(f"unknown target {unknown[0]!r}; --list shows them", file=sys.stderr)
        return 2
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install '.[test]' (it has wheels for Linux x86_64)", file=sys.stderr)
        return 2
    os.environ.setdefault("NSINSPECT_PURE_PYTHON", "")
    ok = [run(t, args.seconds, args.keep) for t in args.targets or fuzz_targets.TARGETS]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
