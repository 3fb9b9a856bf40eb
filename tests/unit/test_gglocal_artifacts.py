"""Artifact installation: digests, unarchiving, permissions, zip-slip rejection (the Java nucleus); nucleus
lite's copy-as-is of local deployments."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from gglocal.artifacts import ExtractLimits, install_artifacts, safe_extract, sha256_digest
from gglocal.errors import ArtifactError
from gglocal.recipe import Manifest, Recipe, parse_recipe


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


@pytest.mark.parametrize("member", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt"])
def test_zip_slip_members_are_rejected(tmp_path: Path, member: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {"ok.txt": b"ok", member: b"evil"})
    destination = tmp_path / "out"
    with pytest.raises(ArtifactError, match="outside"):
        safe_extract(archive, destination)
    assert not (tmp_path / "evil.txt").exists()
    assert not destination.exists()


def test_symlink_members_are_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def recipe_with(artifacts: list[dict[str, object]]) -> tuple[Recipe, Manifest]:
    recipe = parse_recipe(
        {
            "ComponentName": "com.example.A",
            "ComponentVersion": "1.0.0",
            "Manifests": [{"Platform": {"os": "*"}, "Artifacts": artifacts}],
        }
    )
    return recipe, recipe.manifests[0]


def test_artifacts_are_copied_verified_and_unarchived(tmp_path: Path) -> None:
    source = tmp_path / "build" / "com.example.A" / "1.0.0"
    source.mkdir(parents=True)
    archive = make_zip(source / "app.zip", {"app/main.py": b"print(1)", "app/data/x.txt": b"x"})
    (source / "tool.sh").write_text("echo hi")
    digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    recipe, manifest = recipe_with(
        [
            {"URI": "s3://b/app.zip", "Unarchive": "ZIP", "Digest": digest, "Algorithm": "SHA-256"},
            {"URI": "s3://b/x/tool.sh", "Permission": {"Execute": "OWNER"}},
        ]
    )
    root = tmp_path / "root"
    installed = install_artifacts(recipe, manifest, tmp_path / "build", root)
    assert installed.artifacts_path == root / "packages/artifacts/com.example.A/1.0.0"
    assert (installed.artifacts_path / "app.zip").is_file()
    assert (installed.decompressed_path / "app" / "app" / "main.py").read_bytes() == b"print(1)"
    assert (installed.artifacts_path / "tool.sh").stat().st_mode & stat.S_IXUSR
    assert sha256_digest(archive) == digest


def test_digest_mismatch_fails_the_install(tmp_path: Path) -> None:
    source = tmp_path / "build" / "com.example.A" / "1.0.0"
    source.mkdir(parents=True)
    (source / "f.bin").write_bytes(b"actual")
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    recipe, manifest = recipe_with([{"URI": "s3://b/f.bin", "Digest": wrong, "Algorithm": "SHA-256"}])
    with pytest.raises(ArtifactError, match="digest mismatch"):
        install_artifacts(recipe, manifest, tmp_path / "build", tmp_path / "root")


def test_missing_artifact_names_where_it_looked(tmp_path: Path) -> None:
    recipe, manifest = recipe_with([{"URI": "s3://b/missing.zip"}])
    with pytest.raises(ArtifactError, match=r"missing\.zip.*com\.example\.A/1\.0\.0"):
        install_artifacts(recipe, manifest, tmp_path / "build", tmp_path / "root")


def test_lite_copies_the_artifact_folder_as_it_is_and_checks_nothing(tmp_path: Path) -> None:
    source = tmp_path / "build" / "com.example.A" / "1.0.0"
    (source / "sub").mkdir(parents=True)
    archive = make_zip(source / "app.zip", {"app/main.py": b"print(1)"})
    (source / "sub" / "unlisted.txt").write_text("also copied")
    (source / "run.sh").write_text("echo hi")
    (source / "run.sh").chmod(0o750)
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    recipe, manifest = recipe_with(
        [
            {"URI": "s3://b/app.zip", "Unarchive": "ZIP", "Digest": wrong, "Algorithm": "SHA-256"},
            {"URI": "s3://b/run.sh", "Permission": {"Execute": "NONE", "Read": "OWNER"}},
            {"URI": "s3://b/missing.bin"},
        ]
    )
    installed = install_artifacts(recipe, manifest, tmp_path / "build", tmp_path / "root", archives=False)
    assert (installed.artifacts_path / "app.zip").read_bytes() == archive.read_bytes()
    assert (installed.artifacts_path / "sub" / "unlisted.txt").read_text() == "also copied"
    # no Permission applied: the mode is the source file's
    assert stat.S_IMODE((installed.artifacts_path / "run.sh").stat().st_mode) == 0o750
    assert installed.decompressed_path.is_dir() and list(installed.decompressed_path.iterdir()) == []
    assert not (installed.artifacts_path / "missing.bin").exists()
    with pytest.raises(ArtifactError, match="digest mismatch"):  # the same build on the Java nucleus
        install_artifacts(recipe, manifest, tmp_path / "build", tmp_path / "classic")


def make_bomb(path: Path, gib: int = 1) -> Path:
    """About 1 MB that unpacks to ``gib`` GiB of zeros."""
    with zipfile.ZipFile(path, "w") as bundle:
        info = zipfile.ZipInfo("zeros.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with bundle.open(info, "w", force_zip64=True) as member:
            chunk = bytes(1024 * 1024)
            for _ in range(1024 * gib):
                member.write(chunk)
    return path


def test_a_1_mb_zip_that_unpacks_to_1_gib_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # before: safe_extract wrote the whole 1 GiB (2.5 s)
    bomb = make_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 1_100_000
    destination = tmp_path / "out"
    with pytest.raises(ArtifactError, match=r"zip bomb.*100 times"):
        safe_extract(bomb, destination)
    assert not destination.exists()


def test_the_total_an_archive_unpacks_to_is_bounded(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", {f"part{i}.bin": os.urandom(1024 * 1024) for i in range(3)})
    destination = tmp_path / "out"
    limits = ExtractLimits(max_bytes=2 * 1024 * 1024)
    with pytest.raises(ArtifactError, match=r"3145728 bytes, more than 2097152 \(ExtractLimits.max_bytes\)"):
        safe_extract(archive, destination, limits=limits)
    assert not destination.exists()
    assert len(safe_extract(archive, destination, limits=ExtractLimits(max_bytes=4 * 1024 * 1024))) == 3


def test_headers_that_understate_the_sizes_do_not_get_more_written(tmp_path: Path) -> None:
    # a member whose headers say 1 KiB but whose data inflates to 64 MiB: zipfile stops at the declared
    # size and the CRC check fails; nothing beyond the declared size reaches the disk, nothing is left
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("x.bin", bytes(64 * 1024 * 1024))
    data = bytearray(archive.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    for offset in (local + 22, central + 24):  # the uncompressed size, in both headers
        assert struct.unpack_from("<I", data, offset) == (64 * 1024 * 1024,)
        struct.pack_into("<I", data, offset, 1024)
    archive.write_bytes(bytes(data))
    destination = tmp_path / "out"
    with pytest.raises(zipfile.BadZipFile):
        safe_extract(archive, destination)
    assert not destination.exists()


def test_an_archive_within_the_limits_keeps_small_highly_compressible_files(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "ok.zip", {"zeros.txt": bytes(512 * 1024), "dir/": b"", "dir/a.txt": b"a"})
    extracted = safe_extract(archive, tmp_path / "out", 0o600)
    assert sorted(p.name for p in extracted) == ["a.txt", "zeros.txt"]
    assert (tmp_path / "out" / "zeros.txt").stat().st_size == 512 * 1024
    assert stat.S_IMODE((tmp_path / "out" / "dir" / "a.txt").stat().st_mode) == 0o600
