"""System V shared memory for tensors (the Edge Manager API's `SharedMemoryHandle`), through libc with ctypes.

Wire contract: a `SharedMemoryHandle(segment_id, offset, size)` names `size` bytes at `offset` in the System V
segment `segment_id` (shmget's id, not its key), holding the tensor's raw C-order bytes exactly as byte_data
would. The agent attaches it read-only (shmat SHM_RDONLY) for the one request and detaches afterwards.

Client side (`OwnedSegment`): one private segment (IPC_PRIVATE, mode 0600) that the client writes and reuses.
It is marked for removal (IPC_RMID) right after the client attaches it: Linux still lets processes with
access attach a segment so marked, and the kernel frees it when the last one detaches, so it never outlives
the client, even one killed with SIGKILL. The agent must therefore run as the client's user (or root) to
read it.

Agent side (`attach_read_only`): the segment is attached first and then inspected (IPC_STAT), so the
segment checked is the one attached; it must belong to (and be created by) a trusted uid, must not be
writable by group or others, and must hold offset + size bytes.

Linux on 64-bit little-endian CPUs only (x86_64, aarch64): the `struct shmid_ds` layout below is theirs
(glibc's: ipc_perm {key, uid, gid, cuid, cgid, mode (low 16 bits), ...} of 48 bytes, then shm_segsz).
Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading
from dataclasses import dataclass

from .errors import InvalidRequestError

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
IPC_STAT = 2
SHM_RDONLY = 0o10000
_PERM = struct.Struct("<iIIIIH")  # key, uid, gid, cuid, cgid, mode
_SEGSZ_OFFSET = 48
_SHMID_DS_BYTES = 256  # more than sizeof(struct shmid_ds) (112 bytes on x86_64 and aarch64)
_FAILED = ctypes.c_void_p(-1).value
MAX_SEGMENT_ID = 2**31 - 1  # shmget returns an int


@dataclass(frozen=True)
class SegmentInfo:
    """What IPC_STAT says of a segment: its size in bytes, owner and creator uids, and mode bits."""

    segment_id: int
    size: int
    uid: int
    cuid: int
    mode: int


class _Libc:
    def __init__(self) -> None:
        if (
            not sys.platform.startswith("linux")
            or ctypes.sizeof(ctypes.c_void_p) != 8
            or sys.byteorder != "little"
        ):
            raise InvalidRequestError(
                "shared memory tensors are supported on 64-bit little-endian Linux only; send byte_data"
            )
        libc = ctypes.CDLL(None, use_errno=True)
        self.shmget = libc.shmget
        self.shmget.argtypes, self.shmget.restype = (
            [ctypes.c_int, ctypes.c_size_t, ctypes.c_int],
            ctypes.c_int,
        )
        self.shmat = libc.shmat
        self.shmat.argtypes, self.shmat.restype = (
            [ctypes.c_int, ctypes.c_void_p, ctypes.c_int],
            ctypes.c_void_p,
        )
        self.shmdt = libc.shmdt
        self.shmdt.argtypes, self.shmdt.restype = [ctypes.c_void_p], ctypes.c_int
        self.shmctl = libc.shmctl
        self.shmctl.argtypes, self.shmctl.restype = (
            [ctypes.c_int, ctypes.c_int, ctypes.c_void_p],
            ctypes.c_int,
        )


_libc: _Libc | None = None
_libc_lock = threading.Lock()


def libc() -> _Libc:
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = _Libc()
        return _libc


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def segment_info(segment_id: int) -> SegmentInfo:
    """IPC_STAT of a segment; InvalidRequestError when there is none by that id or it cannot be read."""
    if not 0 <= segment_id <= MAX_SEGMENT_ID:
        raise InvalidRequestError(f"shared memory segment id {segment_id} is not a System V shm id")
    buffer = ctypes.create_string_buffer(_SHMID_DS_BYTES)
    if libc().shmctl(segment_id, IPC_STAT, buffer) != 0:
        raise InvalidRequestError(f"shared memory segment {segment_id} cannot be inspected: {_errno_text()}")
    _key, uid, _gid, cuid, _cgid, mode = _PERM.unpack_from(buffer.raw, 0)
    (size,) = struct.unpack_from("<Q", buffer.raw, _SEGSZ_OFFSET)
    return SegmentInfo(segment_id=segment_id, size=size, uid=uid, cuid=cuid, mode=mode & 0o777)


class ReadOnlyAttachment:
    """A segment attached read-only; `view(offset, size)` is a read-only memoryview; detach() once done
    (every view must be gone by then: reading a detached view crashes the process)."""

    def __init__(self, segment_id: int) -> None:
        self.segment_id = segment_id
        if not 0 <= segment_id <= MAX_SEGMENT_ID:  # ctypes would silently truncate it to another id
            raise InvalidRequestError(f"shared memory segment id {segment_id} is not a System V shm id")
        address = libc().shmat(segment_id, None, SHM_RDONLY)
        if address is None or address == _FAILED:
            raise InvalidRequestError(
                f"shared memory segment {segment_id} cannot be attached: {_errno_text()}; the agent must run "
                f"as the client's user (or root) to read its segments"
            )
        self._address: int | None = address
        try:
            self.info = segment_info(segment_id)
        except BaseException:
            self.detach()
            raise

    def view(self, offset: int, size: int) -> memoryview:
        if self._address is None:
            raise InvalidRequestError(f"shared memory segment {self.segment_id} is detached")
        if offset < 0 or size < 0 or offset + size > self.info.size:
            raise InvalidRequestError(
                f"shared memory handle offset {offset} + size {size} exceeds segment {self.segment_id} "
                f"({self.info.size} bytes)"
            )
        return memoryview((ctypes.c_char * size).from_address(self._address + offset)).cast("B").toreadonly()

    def detach(self) -> None:
        if self._address is not None:
            libc().shmdt(self._address)
            self._address = None


def attach_read_only(segment_id: int, trusted_uids: frozenset[int]) -> ReadOnlyAttachment:
    """Attaches segment_id read-only after checking who made it: InvalidRequestError unless it belongs to, and
    was created by, a trusted uid and no one but its owner may write it."""
    attachment = ReadOnlyAttachment(segment_id)
    info = attachment.info
    problem = None
    if info.uid not in trusted_uids or info.cuid not in trusted_uids:
        problem = f"belongs to uid {info.uid} (created by uid {info.cuid}), which this agent does not trust"
    elif info.mode & 0o022:
        problem = f"is writable by other users (mode {info.mode:o})"
    if problem:
        attachment.detach()
        raise InvalidRequestError(
            f"shared memory segment {segment_id} {problem}; send tensors in a segment of the agent's user "
            f"with mode 0600 (or start the agent with --trusted-uid UID), or as byte_data"
        )
    return attachment


class OwnedSegment:
    """The client's segment: created private (mode 0600), marked for removal at once (freed when the last
    process detaches), written before each request. Not thread-safe: callers serialise its use."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.segment_id = libc().shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
        if self.segment_id < 0:
            raise InvalidRequestError(
                f"cannot create a {size}-byte shared memory segment: {_errno_text()} (kernel.shmmax, "
                f"kernel.shmall); disable the client's shared memory transport (shm_threshold_bytes=None)"
            )
        address = libc().shmat(self.segment_id, None, 0)
        if address is None or address == _FAILED:
            error = _errno_text()
            libc().shmctl(self.segment_id, IPC_RMID, None)
            raise InvalidRequestError(f"cannot attach the shared memory segment just created: {error}")
        self._address: int | None = address
        libc().shmctl(self.segment_id, IPC_RMID, None)

    def write(self, offset: int, data: memoryview) -> None:
        """Copies a C-contiguous buffer into the segment at offset (one copy)."""
        source = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        if self._address is None or offset < 0 or offset + source.nbytes > self.size:
            raise InvalidRequestError(
                f"{source.nbytes} bytes at {offset} do not fit the {self.size}-byte segment"
            )
        target = (ctypes.c_char * source.nbytes).from_address(self._address + offset)
        memoryview(target).cast("B")[:] = source

    def close(self) -> None:
        if self._address is not None:
            libc().shmdt(self._address)
            self._address = None
