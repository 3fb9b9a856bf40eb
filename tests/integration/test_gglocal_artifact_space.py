"""Unarchiving is bounded by the free disk space, on a real small filesystem: a 96 MiB tmpfs mounted in a
private mount namespace (``unshare --mount``; root in the sandbox)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
EXTRACT = r"""
import json, sys
from pathlib import Path
from gglocal.artifacts import safe_extract
from gglocal.errors import ArtifactError
outcomes = {}
for name in sys.argv[2:]:
    try:
        outcomes[name] = len(safe_extract(Path(name), Path(sys.argv[1]) / Path(name).stem))
    except ArtifactError as exc:
        outcomes[name] = str(exc)
print(json.dumps(outcomes))
"""


def make_zip(path: Path, mib: int) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:  # random bytes: a compression ratio of 1, no bomb
        for index in range(mib):
            bundle.writestr(f"part{index}.bin", os.urandom(1024 * 1024))
    return path


def test_an_archive_larger_than_the_free_space_less_the_reserve_is_refused_before_writing(
    tmp_path: Path,
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give the test a small filesystem")
    small, large = make_zip(tmp_path / "small.zip", 16), make_zip(tmp_path / "large.zip", 40)
    disk = tmp_path / "disk"
    disk.mkdir()
    extract = f"{sys.executable} -c '{EXTRACT}' {disk} {small} {large}"
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=96m tmpfs {disk} && exec {extract}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert outcomes[str(small)] == 16, "32 MiB may be written: 96 MiB free less the 64 MiB kept free"
    refusal = outcomes[str(large)]
    assert "large.zip: unpacks to 41943040 bytes, more than" in refusal
    assert "the free disk space" in refusal and "less 67108864" in refusal
