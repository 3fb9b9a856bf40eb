"""Model packages as the agent trusts them: inside a models root, checked against their manifest, read once.

On every LoadModel, before any runtime sees a byte:
1. the folder is resolved (symbolic links followed) and must lie inside one of the models roots;
2. it and every folder from its models root down to it must belong to a trusted user and not be writable by
   other users (someone who can write the folder can replace manifest.json itself);
3. `modelpkg.manifest.load_manifest` + `package_problems`: every file listed, none unlisted, none a symbolic
   link, none writable by group or others (schema 2);
4. every file is then read once (O_NOFOLLOW, relative to the folder opened once, owned by a trusted user) and
   those bytes are checked against the manifest's sha256 (`verify_files`): they, and no later state of the
   disk, are what the backend loads (ONNX Runtime from memory; DLR from a private copy, see
   agent.backends.dlr_backend). A file replaced after the checks fails its digest instead of being loaded.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from agent_client.errors import InvalidRequestError, ManifestError
from agent_client.sockets import describe_uid
from modelpkg.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    load_manifest,
    package_error,
    package_problems,
    verify_files,
)

logger = logging.getLogger(__name__)

MAX_PACKAGE_BYTES = 4 * 1024**3  # larger packages are refused rather than read into memory


@dataclass(frozen=True)
class VerifiedPackage:
    """A model package whose files matched their manifest digests, with those files' bytes."""

    folder: Path
    manifest: ModelManifest
    contents: Mapping[str, bytes]  # file name -> verified bytes (manifest.json excluded)

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    def content(self, name: str) -> bytes:
        try:
            return self.contents[name]
        except KeyError:
            raise ManifestError(
                f"{self.folder}: the manifest does not list {name}, which this format needs; "
                f"rewrite it with `python -m modelprep manifest {self.folder}`"
            ) from None


def trim_heap() -> None:
    """Gives the memory freed after a load (the package's bytes) back to the OS (glibc's malloc_trim; other
    C libraries keep it for later allocations). Measured: lite0's agent 103 -> 76 MiB after a load."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        logger.debug("no malloc_trim in this C library; freed memory stays with the process")


def _unsafe_folder(folder: Path, info: os.stat_result, trusted_uids: frozenset[int]) -> str | None:
    if info.st_uid not in trusted_uids:
        return f"{folder} belongs to {describe_uid(info.st_uid)}; chown it to the agent's user or root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{folder} is writable by other users (mode {stat.filemode(info.st_mode)}): chmod go-w it"
    return None


def check_models_root(root: Path, trusted_uids: frozenset[int]) -> str | None:
    """Why root cannot hold trusted packages, or None."""
    try:
        info = root.stat()
    except OSError as exc:
        return f"models root {root} cannot be read: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"models root {root} is not a folder"
    problem = _unsafe_folder(root, info, trusted_uids)
    return None if problem is None else f"models root {problem}"


def _check_folders(root: Path, folder: Path, trusted_uids: frozenset[int]) -> None:
    current = folder
    while True:
        problem = _unsafe_folder(current, current.stat(), trusted_uids)
        if problem:
            raise InvalidRequestError(f"model folder {folder} cannot be trusted: {problem}")
        if current == root:
            return
        current = current.parent


def _read_checked(folder_fd: int, folder: Path, name: str, trusted_uids: frozenset[int]) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError as exc:
        raise ManifestError(
            f"{folder / name} cannot be opened: {exc.strerror}; redeploy the package"
        ) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ManifestError(
                f"{folder / name} changed to an unsafe file while it was checked; redeploy it"
            )
        if info.st_uid not in trusted_uids:
            raise ManifestError(
                f"{folder / name} belongs to {describe_uid(info.st_uid)}: chown it to the agent's user or "
                f"root"
            )
        return file.read()


def read_package(root: Path, folder: Path, trusted_uids: frozenset[int]) -> VerifiedPackage:
    """Checks and reads the package in folder (already resolved, inside root); see the module docstring.
    ManifestError or InvalidRequestError saying what is wrong and how to fix it."""
    _check_folders(root, folder, trusted_uids)
    if not (folder / MANIFEST_FILE).exists():
        raise ManifestError(
            f"model folder {folder} has no {MANIFEST_FILE}, and the agent loads only packages whose files "
            f"are listed with their digests: copy the manifest.json of a package of the same format into it "
            f"and run `python -m modelprep manifest {folder}` to fill in the digests of its files"
        )
    manifest = load_manifest(folder)
    problems = package_problems(manifest)
    if problems:
        raise package_error(manifest, problems)  # before any file is read
    owner = (folder / MANIFEST_FILE).lstat().st_uid
    if owner not in trusted_uids:
        raise ManifestError(
            f"{folder / MANIFEST_FILE} belongs to {describe_uid(owner)}: chown it to the agent's user or root"
        )
    total = sum((folder / name).stat().st_size for name, _ in manifest.files)
    if total > MAX_PACKAGE_BYTES:
        raise ManifestError(f"model package {folder} holds {total} bytes, more than the agent loads")
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        opened = os.fstat(folder_fd)
        if (opened.st_dev, opened.st_ino) != (folder.stat().st_dev, folder.stat().st_ino):
            raise ManifestError(f"model folder {folder} was replaced while it was checked; redeploy it")
        contents = {name: _read_checked(folder_fd, folder, name, trusted_uids) for name, _ in manifest.files}
    finally:
        os.close(folder_fd)
    verify_files(manifest, contents)  # the bytes read, hashed once: those and no later state are loaded
    logger.info("verified package %s: %d files, sha256 %s", folder, len(contents), manifest.sha256)
    return VerifiedPackage(folder=folder, manifest=manifest, contents=MappingProxyType(contents))
