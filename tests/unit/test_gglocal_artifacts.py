"""Artifact installation: digests, unarchiving, permissions, zip-slip rejection (the Java nucleus); nucleus
lite's copy-as-is of local deployments."""

from __future__ import annotations

import base64
import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from gglocal.artifacts import install_artifacts, safe_extract, sha256_digest
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
