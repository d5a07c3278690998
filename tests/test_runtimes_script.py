"""scripts/runtimes.py: the Debian mirror is read from this machine's apt sources, both formats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import runtimes  # noqa: E402

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(("files", "expected"), [
    ({"sources.list.d/debian.sources": DEB822},
     ("http://mirror.example/debian", "/usr/share/keyrings/debian-archive-keyring.gpg")),
    ({"sources.list": "# comment\ndeb http://local.mirror/debian/ bookworm main contrib\n"},
     ("http://local.mirror/debian", "/usr/share/keyrings/debian-archive-keyring.gpg")),
    ({"sources.list": "deb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main\n"}, ("http://m/debian", "/k.gpg")),
    ({"sources.list": "deb http://m/debian-security bookworm-security main\n"}, None),
])
def test_debian_mirror_from_apt_sources(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if expected is None:
        with pytest.raises(RuntimeError, match="no Debian archive"):
            runtimes.debian_mirror(str(tmp_path))
    else:
        assert runtimes.debian_mirror(str(tmp_path)) == expected


def test_each_build_reports_the_version_its_id_promises():
    from helpers import require_root

    require_root()
    for rid in runtimes.SUITES:
        rt = runtimes.ensure(rid)
        assert rt.version.startswith(runtimes.EXPECT[rid]) and rt.runc_version
