"""Model packages as the agent trusts them: inside a models root, checked against their manifest, held open.

On every LoadModel, before any runtime sees a byte:
1. the folder is resolved (symbolic links followed) and must lie inside one of the models roots;
2. it and every folder from its models root down to it must belong to a trusted user and not be writable by
   other users (someone who can write the folder can replace manifest.json itself);
3. `modelpkg.manifest.load_manifest` + `package_problems`: every file listed, none unlisted, none a symbolic
   link, none writable by group or others (schema 2);
4. every file is then opened once (O_NOFOLLOW, relative to the folder opened once, owned by a trusted user,
   not writable by others) and hashed from that open file against the manifest's sha256 (`verify_files`).
   The backend loads from those open files, never from the paths again (ONNX Runtime opens the file
   through /proc/self/fd; DLR from a private copy, see agent.backends.dlr_backend): a file replaced after
   the checks is not what is loaded. Only trusted users can write the files at all; a write by one of them
   between the hash and the end of the load that moves the file's size, modification time, mode or owner
   (a redeploy into the same files) is refused (`check_unchanged`); one that keeps all four is not seen.
   ONNX Runtime reads the model itself instead of being handed a copy in memory: a load peaks lower by
   about the model's size.
The package holds its files open until `close()` (a VerifiedPackage is a context manager).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType

from agent_client.errors import InvalidRequestError, ManifestError
from agent_client.sockets import describe_uid
from modelpkg.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    load_manifest,
    package_error,
    package_problems,
    sha256_of_fd,
    verify_files,
)

logger = logging.getLogger(__name__)

MAX_PACKAGE_BYTES = 4 * 1024**3  # larger packages are refused rather than loaded
COPY_BLOCK = 64 * 1024
PROC_FDS = "/proc/self/fd"


@dataclass(frozen=True)
class PackageFile:
    """A listed file of a package, open since its checks, and how it stood when it was hashed."""

    fd: int
    stamp: tuple[int, int, int, int]  # st_size, st_mtime_ns, st_mode, st_uid (a rename over it moves none)


def _stamp(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_size, info.st_mtime_ns, info.st_mode, info.st_uid)


@dataclass(frozen=True)
class VerifiedPackage:
    """A model package whose files matched their manifest digests, each held open as it was hashed."""

    folder: Path
    manifest: ModelManifest
    files: Mapping[str, PackageFile]  # file name -> the open file (manifest.json excluded)
    _closed: list[bool] = field(default_factory=lambda: [False], init=False, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    def _file(self, name: str) -> PackageFile:
        try:
            return self.files[name]
        except KeyError:
            raise ManifestError(
                f"{self.folder}: the manifest does not list {name}, which this format needs; "
                f"rewrite it with `python -m modelprep manifest {self.folder}`"
            ) from None

    def path(self, name: str) -> str:
        """A path that opens the very file that was hashed (for a runtime that reads files itself); call
        check_unchanged once it has read it. Valid until close()."""
        if self._closed[0]:
            raise ManifestError(f"{self.folder}: the package was closed; load it again")
        if not os.path.isdir(PROC_FDS):
            raise ManifestError(
                f"{PROC_FDS} is missing: the agent hands the runtime the file it checked through it; "
                f"run the agent where /proc is mounted"
            )
        return f"{PROC_FDS}/{self._file(name).fd}"

    def _blocks(self, name: str) -> Iterator[bytes]:
        """The file that was hashed, block by block from its start (positional reads)."""
        fd, offset = self._file(name).fd, 0
        while block := os.pread(fd, COPY_BLOCK, offset):
            yield block
            offset += len(block)

    def content(self, name: str) -> bytes:
        """The bytes of the file that was hashed (read from the open file, then checked unchanged)."""
        content = b"".join(self._blocks(name))
        self.check_unchanged(name)
        return content

    def copy(self, name: str, target: int) -> None:
        """Writes the file that was hashed to the open file target (then checks it unchanged)."""
        for block in self._blocks(name):
            view = memoryview(block)
            while view:
                view = view[os.write(target, view) :]
        self.check_unchanged(name)

    def check_unchanged(self, *names: str) -> None:
        """ManifestError if a file (all when none are named) was written to since it was hashed."""
        for name in names or tuple(self.files):
            file = self._file(name)
            if _stamp(os.fstat(file.fd)) != file.stamp:
                raise ManifestError(
                    f"{self.folder / name} was written to while the agent loaded it; it was not loaded: "
                    f"redeploy the package and load it again"
                )

    def close(self) -> None:
        """Closes the files, once (a second call closes nothing: their numbers may be reused by then)."""
        if self._closed[0]:
            return
        self._closed[0] = True
        for file in self.files.values():
            with contextlib.suppress(OSError):
                os.close(file.fd)

    def __enter__(self) -> VerifiedPackage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def trim_heap() -> None:
    """Gives the memory freed after a load (the runtime's parse of the model file) back to the OS (glibc's
    malloc_trim; other C libraries keep it for later allocations)."""
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


def _open_checked(folder_fd: int, folder: Path, name: str, trusted_uids: frozenset[int]) -> PackageFile:
    """The file opened (not following a link), its type, mode and owner checked on the open file, and how it
    stands now (hashed next, by _digest)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError as exc:
        raise ManifestError(
            f"{folder / name} cannot be opened: {exc.strerror}; redeploy the package"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ManifestError(
                f"{folder / name} changed to an unsafe file while it was checked; redeploy it"
            )
        if info.st_uid not in trusted_uids:
            raise ManifestError(
                f"{folder / name} belongs to {describe_uid(info.st_uid)}: chown it to the agent's user or "
                f"root"
            )
        return PackageFile(fd, _stamp(info))
    except BaseException:
        os.close(fd)
        raise


def _digest(file: PackageFile, where: Path) -> str:
    try:
        digest = sha256_of_fd(file.fd)
        changed = _stamp(os.fstat(file.fd)) != file.stamp
    except OSError as exc:
        raise ManifestError(f"{where} cannot be read: {exc.strerror}; redeploy the package") from exc
    if changed:
        raise ManifestError(f"{where} was written to while the agent checked it; redeploy the package")
    return digest


def read_package(root: Path, folder: Path, trusted_uids: frozenset[int]) -> VerifiedPackage:
    """Checks the package in folder (already resolved, inside root), opens and hashes its files; see the
    module docstring.
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
    files: dict[str, PackageFile] = {}
    package = VerifiedPackage(folder=folder, manifest=manifest, files=MappingProxyType(files))
    try:
        opened = os.fstat(folder_fd)
        if (opened.st_dev, opened.st_ino) != (folder.stat().st_dev, folder.stat().st_ino):
            raise ManifestError(f"model folder {folder} was replaced while it was checked; redeploy it")
        for name, _ in manifest.files:
            files[name] = _open_checked(folder_fd, folder, name, trusted_uids)
        verify_files(manifest, {name: _digest(file, folder / name) for name, file in files.items()})
    except BaseException:
        package.close()
        raise
    finally:
        os.close(folder_fd)
    logger.info("verified package %s: %d files, sha256 %s", folder, len(files), manifest.sha256)
    return package
