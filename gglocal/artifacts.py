"""Artifact installation: copy from the build's artifact dir, verify digests, unarchive ZIPs safely.

Source layout (greengrass-cli ``--artifactDir``): ``<artifact_dir>/<name>/<version>/<file>``, where ``<file>``
is the last segment of the recipe's artifact URI. Destinations follow the device layout:
``<root>/packages/artifacts/<name>/<version>/<file>`` and, for ``Unarchive: ZIP``,
``<root>/packages/artifacts-unarchived/<name>/<version>/<zip name without extension>/``.

That is the Java nucleus (``archives=True``). Nucleus lite's local deployments merge the artifact dir into
``packages/artifacts/`` as it is, checking nothing ("Assuming recipe artifacts are found on-disk."): no
unarchiving, no digest, no ``Permission``, no complaint about a missing file; ``artifacts-unarchived``
stays empty (``archives=False``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gglocal.errors import ArtifactError
from gglocal.recipe import Artifact, Manifest, Recipe

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class InstalledArtifacts:
    artifacts_path: Path
    decompressed_path: Path
    files: tuple[Path, ...]


def artifact_dirs(root: Path, name: str, version: str) -> tuple[Path, Path]:
    packages = root / "packages"
    return packages / "artifacts" / name / version, packages / "artifacts-unarchived" / name / version


def sha256_digest(path: Path) -> str:
    """Base64 of the file's SHA-256, the form recipes carry in ``Digest``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def verify_digest(path: Path, artifact: Artifact) -> None:
    if not artifact.digest:
        return
    algorithm = (artifact.algorithm or "SHA-256").upper()
    if algorithm != "SHA-256":
        raise ArtifactError(f"{path.name}: unsupported digest algorithm {artifact.algorithm} (only SHA-256)")
    actual = sha256_digest(path)
    if actual != artifact.digest:
        raise ArtifactError(
            f"{path.name}: digest mismatch (recipe {artifact.digest}, file {actual}); rebuild so the recipe's"
            " Digest matches the artifact, or remove Digest from the recipe"
        )


def _mode_bits(artifact: Artifact) -> int:
    bits = stat.S_IRUSR | stat.S_IWUSR
    if artifact.read == "ALL":
        bits |= stat.S_IRGRP | stat.S_IROTH
    if artifact.execute in ("OWNER", "ALL"):
        bits |= stat.S_IXUSR
    if artifact.execute == "ALL":
        bits |= stat.S_IXGRP | stat.S_IXOTH
    return bits


@dataclass(frozen=True)
class ExtractLimits:
    """What one archive may unpack to. ``max_bytes`` in all (and never more than the free disk space less
    ``keep_free``); per member, at most ``max_ratio`` times its compressed size once past ``ratio_floor``
    bytes (small files may compress any amount). Bytes are counted as written, not taken from headers."""

    max_bytes: int = 2 * 1024**3
    max_ratio: float = 100.0
    ratio_floor: int = 1024 * 1024
    keep_free: int = 64 * 1024 * 1024


def _checked_members(
    archive: Path, bundle: zipfile.ZipFile, destination: Path
) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Every member with its target, refusing zip-slip and symbolic links."""
    members = []
    for member in bundle.infolist():
        target = (destination / member.filename).resolve()
        if member.filename.startswith(("/", "\\")) or not target.is_relative_to(destination):
            raise ArtifactError(
                f"{archive.name}: member {member.filename!r} would extract outside {destination}"
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ArtifactError(f"{archive.name}: member {member.filename!r} is a symbolic link")
        members.append((member, target))
    return members


class _Unpacker:
    """Writes the members of one archive within its byte budget, counting the bytes as they are written."""

    def __init__(self, archive: Path, bundle: zipfile.ZipFile, destination: Path, limits: ExtractLimits):
        self.archive = archive
        self.bundle = bundle
        self.limits = limits
        self.written = 0
        free = shutil.disk_usage(destination).free
        if free - limits.keep_free < limits.max_bytes:
            self.budget = max(free - limits.keep_free, 0)
            self.bound = f"the free disk space ({free} bytes) less {limits.keep_free}"
        else:
            self.budget, self.bound = limits.max_bytes, "ExtractLimits.max_bytes"

    def ratio_cap(self, member: zipfile.ZipInfo) -> float:
        return max(self.limits.ratio_floor, self.limits.max_ratio * max(member.compress_size, 1))

    def refuse_declared(self, members: list[zipfile.ZipInfo]) -> None:
        """Refuse from the headers alone, before anything is written, what they say is too much."""
        declared = sum(member.file_size for member in members)
        if declared > self.budget:
            raise self._too_much(f"unpacks to {declared} bytes, more than {self.budget} ({self.bound})")
        for member in members:
            if member.file_size > self.ratio_cap(member):
                raise self._too_much(
                    f"member {member.filename!r} unpacks {member.compress_size} bytes to {member.file_size}"
                )

    def unpack(self, member: zipfile.ZipInfo, target: Path) -> None:
        own = 0
        try:
            with self.bundle.open(member) as source, target.open("wb") as out:
                while chunk := source.read(_CHUNK):
                    own += len(chunk)
                    if self.written + own > self.budget:
                        raise self._too_much(f"unpacks to more than {self.budget} bytes ({self.bound})")
                    if own > self.ratio_cap(member):
                        raise self._too_much(
                            f"member {member.filename!r} unpacks to more than {self.limits.max_ratio:g} times"
                            f" its {member.compress_size} compressed bytes"
                        )
                    out.write(chunk)
        except OSError as exc:
            raise ArtifactError(f"{self.archive.name}: cannot unpack {member.filename!r}: {exc}") from exc
        finally:
            self.written += own

    def _too_much(self, what: str) -> ArtifactError:
        return ArtifactError(
            f"{self.archive.name}: {what}; refused as a possible zip bomb (limits: ExtractLimits, at most"
            f" {self.limits.max_ratio:g} times the compressed size per member)"
        )


def safe_extract(
    archive: Path, destination: Path, mode: int | None = None, limits: ExtractLimits | None = None
) -> list[Path]:
    """Extract a ZIP into ``destination``; refuses members that would land outside it (zip-slip), symbolic
    links, and archives that unpack to more than ``limits`` allow (zip bombs). A refused archive leaves
    nothing of what it wrote."""
    destination = destination.resolve()
    created = not destination.exists()
    extracted: list[Path] = []
    with zipfile.ZipFile(archive) as bundle:
        members = _checked_members(archive, bundle, destination)
        destination.mkdir(parents=True, exist_ok=True)
        try:
            unpacker = _Unpacker(archive, bundle, destination, limits or ExtractLimits())
            unpacker.refuse_declared([member for member, _ in members])
            for member, target in members:
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted.append(target)
                unpacker.unpack(member, target)
                if mode is not None:
                    target.chmod(mode)
        except BaseException:
            if created:
                shutil.rmtree(destination, ignore_errors=True)
            else:
                for path in extracted:
                    path.unlink(missing_ok=True)
            raise
    return extracted


def _copy_as_is(recipe: Recipe, artifact_dir: Path | None, target: Path) -> list[Path]:
    """Nucleus lite: the component's artifact folder copied as it is (modes kept), nothing checked."""
    source = artifact_dir / recipe.name / str(recipe.version) if artifact_dir else None
    logger.info("%s: Assuming recipe artifacts are found on-disk. (nucleus lite)", recipe.name)
    if source is None or not source.is_dir():
        logger.warning("%s: no artifact folder %s; nucleus lite copies nothing", recipe.name, source)
        return []
    shutil.copytree(source, target, dirs_exist_ok=True)
    return sorted(p for p in target.rglob("*") if p.is_file())


def install_artifacts(
    recipe: Recipe, manifest: Manifest, artifact_dir: Path | None, root: Path, *, archives: bool = True
) -> InstalledArtifacts:
    """Copy, verify and unarchive the manifest's artifacts (``archives``, the Java nucleus), or copy the
    artifact folder as it is (nucleus lite); raises ArtifactError naming what is wrong."""
    version = str(recipe.version)
    target, unarchived = artifact_dirs(root, recipe.name, version)
    for folder in (target, unarchived):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    if not archives:
        return InstalledArtifacts(target, unarchived, tuple(_copy_as_is(recipe, artifact_dir, target)))
    files: list[Path] = []
    for artifact in manifest.artifacts:
        if artifact.uri.startswith("docker:"):
            logger.warning(
                "%s: docker artifact %s is not supported locally; skipped", recipe.name, artifact.uri
            )
            continue
        source_dir = (artifact_dir / recipe.name / version) if artifact_dir else None
        source = source_dir / artifact.file_name if source_dir else None
        if source is None or not source.is_file():
            raise ArtifactError(
                f"{recipe.name} {version}: artifact {artifact.file_name} (from {artifact.uri}) not found in "
                f"{source_dir or 'the artifact dir (none given)'}"
            )
        verify_digest(source, artifact)
        copied = target / artifact.file_name
        shutil.copyfile(source, copied)
        copied.chmod(_mode_bits(artifact))
        files.append(copied)
        if artifact.unarchive == "ZIP":
            folder = unarchived / Path(artifact.file_name).stem
            try:
                safe_extract(copied, folder, _mode_bits(artifact))
            except zipfile.BadZipFile as exc:
                raise ArtifactError(f"{recipe.name}: {artifact.file_name} is not a valid ZIP: {exc}") from exc
        elif artifact.unarchive not in ("NONE", ""):
            raise ArtifactError(
                f"{recipe.name}: Unarchive {artifact.unarchive} is not supported (NONE or ZIP)"
            )
    logger.info("%s %s: installed %d artifact(s) in %s", recipe.name, version, len(files), target)
    return InstalledArtifacts(target, unarchived, tuple(files))
