#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what it needs, then runs pytest.
#   sudo scripts/test.sh [pytest args]
# Needs root: the tests make namespaces and run a private containerd.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh makes namespaces and runs containerd: run it as root (sudo scripts/test.sh)." >&2
    exit 2
fi

# Debian packages: the runtime the suite starts, the tools it compares with, a C compiler for the benchmark floor,
# patchelf to run newer suites' runc on this glibc (scripts/runtimes.py), buildah and debootstrap to build the
# agent's image from this checkout without a Docker engine (scripts/agent_image.py, tests/test_agent_pod_real.py).
packages=(containerd runc containernetworking-plugins busybox-static util-linux iproute2 gcc openssl patchelf buildah debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --root-user-action=ignore --disable-pip-version-check '.[test]'
# The suite imports this checkout, not the installed copy: build the scan's C speed-up in place too (gcc is
# installed above), so that every test runs the C path; tests/test_scan_speedup.py compares it with the Python one.
python3 setup.py -q build_ext --inplace

# Generated protobuf code must match its .proto files; lint and types must be clean (pinned in the test extra).
python3 scripts/gen_protos.py --check
python3 scripts/gen_help.py --check
python3 -m ruff check .
python3 -m mypy

# The containerd builds of the runtime matrix (1.6 from this machine, 1.7 from trixie, 2.x from sid), fetched
# by package name into a cache kept between runs; the suite would fetch them too, this shows it up front.
python3 scripts/runtimes.py fetch

exec python3 -m pytest "$@"
