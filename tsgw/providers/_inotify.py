"""Linux inotify through ctypes: the folder watcher's fast path (no new dependency).

inotify(7): ``inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`` gives a file descriptor; each
``inotify_add_watch(fd, path, mask)`` returns a watch descriptor (wd); a ``read`` of the
descriptor returns whole ``struct inotify_event`` records: ``int wd; uint32_t mask, cookie, len;
char name[len]`` (the name NUL-padded, present for events on a watched folder's entries). An
``IN_Q_OVERFLOW`` event (wd -1) means events were dropped: the reader must rescan. A watch on a
folder sees its direct entries only, so a tree needs one watch per folder.

What inotify does not see, and why the caller keeps a polling fallback: changes made on another
host to a network share (NFS, SMB), some FUSE and overlay cases, and a file changed through a
hard link from outside the watched folder (the event goes to the folder of the path used).
:func:`available` is False off Linux or where the kernel refuses (e.g. ``max_user_instances``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from dataclasses import dataclass

__all__ = [
    "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_IGNORED",
    "IN_ISDIR",
    "IN_MODIFY",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_Q_OVERFLOW",
    "Event",
    "Inotify",
    "available",
    "parse",
]

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")
_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One inotify event: the watch it came from (-1 for an overflow), its mask, and the entry's
    name within the watched folder ("" for an event on the folder itself)."""

    wd: int
    mask: int
    cookie: int
    name: str


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    """True where inotify can be used at all (Linux with a libc that has it)."""
    return _LIBC is not None


def parse(data: bytes) -> list[Event]:
    """The events in ``data``, one ``read`` of an inotify descriptor (whole records only)."""
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        raw = data[start : start + length]
        name = raw.split(b"\0", 1)[0].decode(errors="surrogateescape")
        events.append(Event(wd, mask, cookie, name))
        offset = start + length
    return events


class Inotify:
    """One inotify instance: non-blocking, close-on-exec. Raises OSError where inotify is not
    available or the kernel refuses another instance."""

    def __init__(self) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this platform")
        fd = int(_LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._paths: dict[int, str] = {}

    def fileno(self) -> int:
        return self._fd

    def add(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch ``path`` for the events in ``mask``; returns its watch descriptor (the same one
        again for a path already watched). Raises OSError (e.g. ENOENT, ENOSPC when
        ``max_user_watches`` is reached)."""
        assert _LIBC is not None
        wd = int(_LIBC.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {os.fspath(path)!r}: {os.strerror(err)}")
        self._paths[wd] = os.fspath(path)
        return wd

    def remove(self, wd: int) -> None:
        """Stop a watch and forget its path (a watch the kernel already dropped is only forgotten)."""
        assert _LIBC is not None
        if self._paths.pop(wd, None) is not None and self._fd >= 0:
            _LIBC.inotify_rm_watch(self._fd, wd)  # EINVAL for one already gone: nothing to do

    def path(self, wd: int) -> str | None:
        """The path a watch descriptor was added for (None once the kernel dropped it)."""
        return self._paths.get(wd)

    @property
    def watches(self) -> dict[int, str]:
        """Watch descriptor → path, for every watch in place."""
        return dict(self._paths)

    def read(self) -> list[Event]:
        """Every event queued now ([] if none: the descriptor never blocks). A watch the kernel
        removed (its folder deleted or unmounted: ``IN_IGNORED``) is forgotten."""
        events: list[Event] = []
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            events.extend(parse(data))
        for e in events:
            if e.mask & IN_IGNORED:
                self._paths.pop(e.wd, None)
        return events

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._paths.clear()

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
