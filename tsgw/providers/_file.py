"""Desired state from a folder of YAML: standalone mode's provider.

The folder holds the same objects a cluster would: gateway.tailscale.com/v1alpha1 objects, and,
since there is no cluster to run them, the core/v1 Services and discovery.k8s.io/v1
EndpointSlices (and gateway.networking.k8s.io/v1 Gateways) that ingress objects point at, as
plain YAML, and the ``kubernetes.io/tls`` Secrets TLS ports name. Every ``*.yaml``/``*.yml``
below the folder is read, in path order; a file may hold several documents.

Validation is tsgw.api's for its own kinds, the same schema the CRDs carry, and the API server's
own rules for the rest (``_builtin``: metadata, Services, EndpointSlices, Gateways), so an object
is rejected here exactly when the API server would reject it, and never reaches translation. A
rejected file is reported with its path, the line of the offending field and the reason, and the
folder keeps serving that file's last good content (or nothing of it, if it never was good):
one bad edit never takes traffic down.

Watching is by inotify(7) where it works (Linux; ``_inotify``, one watch per folder of the
tree), with polling kept as the fallback. With inotify, a change is loaded once no event has
come for ``notify_debounce`` (5 ms) and no file is still open for writing: a file written since
its last ``IN_CLOSE_WRITE`` holds the reload (an editor's truncate-then-write is never read half
done), and a rename into place (``IN_MOVED_TO``) or a close after writing releases it; a file
kept open longer than ``rescan_interval`` no longer holds it. The folder is still scanned every
``rescan_interval`` (1 s), because inotify stays silent on network shares, some FUSE and
overlay file systems, and for a file changed through a hard link from outside the folder.
Where inotify is off or refused (``notify=False``, not Linux, the kernel's limits), the folder
is polled instead (``os.scandir`` + ``stat``, every ``poll_interval``) and a change is acted on
once the folder has been quiet for ``debounce`` (an editor's save is often several writes:
truncate, write, rename). Scans run in a worker thread, so the event loop never waits on the
disk; they cost microseconds for a folder of a few dozen files.

Only regular files are read, each at most ``max_file_size`` bytes (the API server's 3 MiB
request limit), opened without blocking: a FIFO, a device, a socket, a symlink loop, a dangling
symlink or a file too large is reported as a problem, never waited on or read into memory, and
the path keeps serving its last good content. A folder reached twice (``ln -s . sub``) is read
once.

Endpoint readiness: in a cluster the kubelet probes pods and the EndpointSlice controller marks
an endpoint ``ready: false`` when its pod stops answering, which is what moves traffic to the
next priority. Standalone mode has no kubelet, so (with ``probe_endpoints``) the provider plays
that part: it opens a TCP connection to every EndpointSlice endpoint's ports every
``probe_interval`` and serves an endpoint that refuses as not ready. As with a kubelet, an
endpoint is not ready until a probe first reaches it (a new one is probed before the reading
that adds it is served). An endpoint the file itself marks ``ready: false`` stays not ready and
is not probed.

Probing has a bounded cost (see :meth:`FileProvider.probe`): thousands of unreachable endpoints
make it fall behind, never starve it. Endpoints last seen ready are probed first, a slow round
cannot take them out (a timeout counts only if noticed on time, and only the second in a row),
and an EndpointSlice whose endpoints probing did not reach in time is reported as a problem.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import re
import stat
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
import yaml

from tsgw import api
from tsgw.providers import _builtin, _inotify
from tsgw.providers._builtin import clip
from tsgw.translate import Inputs

__all__ = ["FileOptions", "FileProvider", "FolderState", "Problem"]

log = structlog.get_logger("tsgw.providers.file")

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NAMESPACED = {k.kind: k.namespaced for k in api.KINDS}
_PATH_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")
_MAX_REASON = 1024

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)"""


@dataclass(frozen=True, slots=True)
class FileOptions:
    """How the folder is read and watched."""

    notify: bool = True
    """Watch the folder with inotify where the platform allows, polling only every
    ``rescan_interval``; False (or no inotify) polls every ``poll_interval``. Default: True."""
    notify_debounce: float = 0.005
    """With inotify: a change is loaded once no event has come for this long (seconds) and no
    file is still open for writing. Default: 0.005."""
    rescan_interval: float = 1.0
    """With inotify: seconds between two scans that catch what inotify does not report (network
    shares, hard links from outside the folder); also the longest a file kept open for writing
    (or a stream of events) holds a reload. Default: 1.0."""
    poll_interval: float = 0.05
    """Without inotify: seconds between two scans of the folder. Default: 0.05."""
    debounce: float = 0.05
    """Without inotify: a change is loaded once the folder has not changed for this long
    (seconds). Default: 0.05."""
    default_namespace: str = "default"
    """Namespace of a namespaced object that names none, as kubectl apply does. Default: default."""
    max_file_size: int = 3 * 1024 * 1024
    """A file larger than this many bytes is reported, not read: the API server's limit on a
    request body (3 MiB). Default: 3 MiB."""
    probe_endpoints: bool = True
    """Probe EndpointSlice endpoints by TCP connect, as the kubelet's readiness probe would.
    Default: True."""
    probe_interval: float = 0.5
    """Seconds between two probe rounds. Default: 0.5."""
    probe_timeout: float = 0.5
    """A connection not made within this many seconds fails the probe. Default: 0.5."""
    probe_concurrency: int = 64
    """At most this many probe connections are being opened at once. Default: 64."""
    probe_max_per_round: int = 512
    """At most this many endpoints (address and port) are probed in one round; the others wait
    for a later round, endpoints last seen ready first. Default: 512."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why (part of) a file is not being served: file, line (1-based; 0 for the whole file) and
    reason."""

    file: str
    line: int
    reason: str
    """Cut to 1,024 characters (with an ellipsis and the full length): a value quoted in it, a
    megabyte-long name say, must not make every log line and status report a megabyte."""

    def __post_init__(self) -> None:
        if len(self.reason) > _MAX_REASON:
            object.__setattr__(self, "reason", clip(self.reason, _MAX_REASON))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FolderState:
    """One reading of the folder: what is served, and what is wrong."""

    inputs: Inputs
    """The objects served: each file's current content if it is good, else its last good one."""
    problems: tuple[Problem, ...]
    """Every file that is not served as it is now, with file, line and reason."""
    origins: Mapping[ObjectKey, tuple[str, int]]
    """Where each served object was read: (kind, namespace, name) → (file, line)."""
    files: int
    """How many YAML files the folder holds."""
    generation: int
    """1 for the first reading, +1 for each reading that found a change."""
    loaded_at: float
    """When this reading was made (seconds since the epoch)."""


@dataclass(frozen=True, slots=True)
class _Doc:
    raw: dict[str, Any]
    key: ObjectKey
    bucket: str
    line: int


@dataclass(slots=True)
class _FileResult:
    digest: bytes
    docs: tuple[_Doc, ...] = ()
    problems: tuple[Problem, ...] = ()


# --- locating a field in YAML -------------------------------------------------------------------


def _line_of(node: yaml.Node | None, path: str) -> int:
    """The 1-based line of the deepest node on ``path`` (``spec.targets[0].ports``) that exists."""
    if node is None:
        return 0
    line = node.start_mark.line + 1
    for token in _PATH_TOKEN.findall(path):
        nxt: yaml.Node | None = None
        if token.startswith("[") and isinstance(node, yaml.SequenceNode):
            i = int(token[1:-1])
            nxt = node.value[i] if i < len(node.value) else None
            if nxt is not None:
                line = nxt.start_mark.line + 1  # the item itself, not the list's key
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == token:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
        if nxt is None:
            break
        node = nxt
        line = max(line, node.start_mark.line + 1) if isinstance(node, yaml.ScalarNode) else line
    return line


# --- one document -------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _check_doc(raw: Any, default_ns: str) -> tuple[dict[str, Any], str, ObjectKey]:
    """Validate one document; returns it (namespace filled in), its bucket and key."""
    if not isinstance(raw, dict):
        raise _Invalid("", "a document must be a mapping with apiVersion and kind")
    version, kind = raw.get("apiVersion"), raw.get("kind")
    if not isinstance(version, str) or not version:
        raise _Invalid("apiVersion", "Required value")
    if not isinstance(kind, str) or not kind:
        raise _Invalid("kind", "Required value")
    try:
        if version == api.API_VERSION:
            namespaced = _NAMESPACED.get(kind)
            if namespaced is None:
                raise _Invalid("kind", f"must be one of {sorted(_NAMESPACED)}")
            ns, name = _builtin.validate_metadata(raw, namespaced, default_ns, _builtin.dns_subdomain)
            api.load(raw)
            return raw, "objects", (kind, ns, name)
        if (version, kind) == ("v1", "Service"):
            ns, name = _builtin.validate_metadata(raw, True, default_ns, _builtin.dns_1035_label)
            _builtin.validate_service(raw)
            return raw, "services", (kind, ns, name)
        if (version, kind) == ("discovery.k8s.io/v1", "EndpointSlice"):
            ns, name = _builtin.validate_metadata(raw, True, default_ns, _builtin.dns_subdomain)
            _builtin.validate_endpoint_slice(raw)
            return raw, "endpoint_slices", (kind, ns, name)
        if (version, kind) == ("gateway.networking.k8s.io/v1", "Gateway"):
            ns, name = _builtin.validate_metadata(raw, True, default_ns, _builtin.dns_subdomain)
            _builtin.validate_gateway(raw)
            return raw, "gateways", (kind, ns, name)
        if (version, kind) == ("v1", "Secret"):
            ns, name = _builtin.validate_metadata(raw, True, default_ns, _builtin.dns_subdomain)
            _builtin.validate_tls_secret(raw)
            return raw, "secrets", (kind, ns, name)
    except api.ValidationError as e:
        raise _Invalid(e.path, e.message) from None
    raise _Invalid(
        "kind",
        f"{clip(version)} {clip(kind)} is not read in standalone mode (only {api.API_VERSION} kinds, v1 "
        "Service, discovery.k8s.io/v1 EndpointSlice, gateway.networking.k8s.io/v1 Gateway and v1 "
        "Secret of type kubernetes.io/tls)",
    )


def _duplicate_key(root: yaml.Node) -> tuple[tuple[str, int], int] | None:
    """The first key set twice in one mapping of ``root``: ((key, its first line), the second
    line). Merge keys (``<<``) are left to the loader."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if k.value in seen:
                        return (k.value, seen[k.value]), line
                    seen[k.value] = line
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def _parse_file(path: str, text: str, default_ns: str) -> tuple[tuple[_Doc, ...], tuple[Problem, ...]]:
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = " ".join(str(x) for x in (e.context, e.problem) if x) or str(e)
        return (), (Problem(path, line, f"invalid YAML: {reason}"),)
    except yaml.YAMLError as e:
        return (), (Problem(path, 0, f"invalid YAML: {e}"),)
    docs: list[_Doc] = []
    problems: list[Problem] = []
    for node in nodes:
        if node is None:
            continue
        try:
            raw = _Loader("").construct_document(node)
        except yaml.MarkedYAMLError as e:  # e.g. an unknown tag, a mapping used as a key
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else node.start_mark.line + 1
            problems.append(Problem(path, line, f"invalid YAML: {e.problem or e}"))
            continue
        if raw is None:
            continue
        dup = _duplicate_key(node)
        if dup is not None:
            # kubectl and the API server refuse these (sigs.k8s.io/yaml's strict decoding); a
            # YAML loader would silently keep the last value.
            (dup_key, first), second = dup
            problems.append(
                Problem(
                    path,
                    second,
                    f'invalid YAML: key "{clip(dup_key)}" already set in map (first at line {first})',
                )
            )
            continue
        try:
            raw, bucket, key = _check_doc(raw, default_ns)
        except _Invalid as e:
            where = f"{e.path}: " if e.path else ""
            problems.append(Problem(path, _line_of(node, e.path), f"{where}{e.message}"))
            continue
        except Exception as e:  # never let one odd document stop the folder from being served
            problems.append(Problem(path, node.start_mark.line + 1, f"cannot read this object: {e!r}"))
            continue
        docs.append(_Doc(raw, key, bucket, node.start_mark.line + 1))
    return tuple(docs), tuple(problems)


# --- the folder ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    files: list[tuple[Path, tuple[int, int, int]]] = field(default_factory=list)
    """Regular YAML files and their (mtime_ns, size, inode)."""
    bad: list[tuple[Path, str, tuple[int, int, int]]] = field(default_factory=list)
    """Entries that cannot be read as a YAML file: path, why, and a stamp that changes with them."""
    dirs: list[Path] = field(default_factory=list)
    """Every folder read (the root first): what inotify watches."""


class _Unreadable(Exception):
    """A path that is not (or no longer) a regular file of a readable size."""


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a file"


def _too_large(size: int, limit: int) -> str:
    return (
        f"{size:,} bytes is more than the {_mib(limit)} an object may take (the API server's request "
        "limit): not read"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _read(path: Path, limit: int) -> bytes:
    """The content of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO swapped in after the scan would otherwise wait for a
    writer forever) and checked again on the open file, and never more than ``limit`` + 1 bytes
    read (a file that grows while read, or a device behind a symlink, cannot take the memory).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unreadable(f"not a regular file ({_file_type(st.st_mode)}): not read")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise _Unreadable(_too_large(max(got, st.st_size), limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


_Target = tuple[str, int]
"""An endpoint as probed: (address, port)."""


@dataclass(frozen=True, slots=True)
class _TargetInfo:
    file: str
    line: int
    slice: str
    """namespace/name of the EndpointSlice that lists it."""
    index: int
    """Its endpoint's position in that slice."""


class _Verdict(enum.Enum):
    UP = "up"
    FAILED = "failed"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class _ProbeRecord:
    since: float
    """When the endpoint was first listed (monotonic seconds)."""
    up: bool | None = None
    """The last verdict: None before the first."""
    last: float = 0.0
    """When it was reached (monotonic seconds; 0: never)."""
    timeouts: int = 0
    """Timeouts in a row."""

    def record(self, verdict: _Verdict, now: float) -> None:
        self.last = now
        if verdict is _Verdict.UP:
            self.up, self.timeouts = True, 0
        elif verdict is _Verdict.FAILED:
            self.up, self.timeouts = False, 0
        else:
            self.timeouts += 1
            # One timeout is not enough to take a ready endpoint out: a second in a row is.
            if not self.up or self.timeouts >= 2:
                self.up = False


class FileProvider:
    """Reads and watches one folder. :meth:`load` reads it once; :meth:`watch` yields a
    :class:`FolderState` for the first reading and for every change after it."""

    def __init__(self, directory: str | os.PathLike[str], options: FileOptions | None = None) -> None:
        self.directory = Path(directory)
        self.options = options or FileOptions()
        self._files: dict[str, _FileResult] = {}
        """Per file: its last reading's digest, last good documents and current problems."""
        self._generation = 0
        self._state: FolderState | None = None
        self._probes: dict[_Target, _ProbeRecord] = {}
        """Per endpoint (address, port) that a served EndpointSlice lists: what probing knows."""
        self._targets: dict[_Target, _TargetInfo] = {}
        self._targets_of: dict[str, _FileResult] | None = None
        """The files ``_targets`` was computed from (recomputed when a reading changes them)."""
        self._up: frozenset[_Target] = frozenset()
        """Endpoints whose last conclusive probe connected. Every other one is served not ready."""
        self._rounds = 0
        """Probe rounds run. Before the first, endpoints are served as written."""
        self._behind: tuple[Problem, ...] = ()
        """One problem per EndpointSlice whose endpoints probing did not get to in time."""
        self._dirs: tuple[Path, ...] = ()
        """The folders the last :meth:`signature` scan read."""

    @property
    def state(self) -> FolderState | None:
        """The last reading (None before the first)."""
        return self._state

    def _scan(self) -> _Scan:
        """Every YAML file below the folder, and every entry that is not one it could read.

        Breadth first, each folder in name order, and each folder once (by device and inode): a
        symlink to a folder already read (``ln -s . sub``) is reported, not followed again.
        Only regular files are read; a FIFO, a device or a socket is reported, never opened.
        """
        scan = _Scan()
        try:
            root = os.stat(self.directory)
        except OSError:
            return scan
        seen = {(root.st_dev, root.st_ino)}
        queue = deque([self.directory])
        while queue:
            d = queue.popleft()
            scan.dirs.append(d)
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except FileNotFoundError:
                continue  # removed while we looked
            except OSError as err:
                scan.bad.append((d, f"cannot list this folder: {err.strerror}", (0, 0, 0)))
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue  # editors' swap and backup files
                p = Path(e.path)
                is_yaml = e.name.endswith((".yaml", ".yml"))
                try:
                    st = os.stat(p)
                except OSError as err:
                    if not e.is_symlink():
                        continue  # removed while we looked
                    lst = os.lstat(p)
                    if err.errno == errno.ELOOP:
                        why = "symlink loop: not read"
                    elif err.errno == errno.ENOENT:
                        why = f"dangling symlink to {clip(os.readlink(p))!r}: not read"
                    else:
                        why = f"cannot follow this symlink: {err.strerror}"
                    scan.bad.append((p, why, (lst.st_mtime_ns, lst.st_size, lst.st_ino)))
                    continue
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) in seen:
                        scan.bad.append(
                            (p, "a link to a folder already read (a loop?): not read again", stamp)
                        )
                    else:
                        seen.add((st.st_dev, st.st_ino))
                        queue.append(p)
                elif not is_yaml:
                    continue
                elif not stat.S_ISREG(st.st_mode):
                    scan.bad.append((p, f"not a regular file ({_file_type(st.st_mode)}): not read", stamp))
                elif st.st_size > self.options.max_file_size:
                    scan.bad.append((p, _too_large(st.st_size, self.options.max_file_size), stamp))
                else:
                    scan.files.append((p, stamp))
        scan.files.sort()
        scan.bad.sort()
        return scan

    def signature(self) -> tuple[tuple[str, int, int, int], ...]:
        """What the watcher compares between scans: (path, mtime_ns, size, inode) per file, and
        per entry it cannot read."""
        scan = self._scan()
        self._dirs = tuple(scan.dirs)
        stamps = [(p, stamp) for p, stamp in scan.files] + [(p, stamp) for p, _why, stamp in scan.bad]
        return tuple(sorted((str(p), *stamp) for p, stamp in stamps))

    def _display(self, p: Path) -> str:
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)

    def _unreadable(self, name: str, why: str) -> _FileResult:
        """An entry that cannot be read: reported, and what it last held when good is kept."""
        prev = self._files.get(name)
        problem = Problem(name, 0, why)
        if prev is not None and not prev.digest and prev.problems == (problem,):
            return prev  # unchanged since the last reading
        if problem not in (prev.problems if prev is not None else ()):
            log.warning("cannot read a file, serving its last good content", problem=str(problem))
        return _FileResult(b"", prev.docs if prev is not None else (), (problem,))

    def load(self) -> FolderState:
        """Read the folder now. Unchanged files (by content) are not parsed again."""
        if not self.directory.is_dir():
            raise FileNotFoundError(f"standalone folder {str(self.directory)!r} does not exist")
        seen: dict[str, _FileResult] = {}
        scan = self._scan()
        for p, why, _stamp in scan.bad:
            name = self._display(p)
            seen[name] = self._unreadable(name, why)
        for p, _stamp in scan.files:
            name = self._display(p)
            prev = self._files.get(name)
            try:
                data = _read(p, self.options.max_file_size)
            except FileNotFoundError:
                continue  # removed while we looked
            except _Unreadable as e:
                seen[name] = self._unreadable(name, str(e))
                continue
            except OSError as e:
                seen[name] = self._unreadable(name, f"cannot read: {e.strerror}")
                continue
            digest = hashlib.sha256(data).digest()
            if prev is not None and prev.digest == digest:
                seen[name] = prev
                continue
            docs: tuple[_Doc, ...]
            problems: tuple[Problem, ...]
            try:
                text = data.decode()
            except UnicodeDecodeError as e:
                docs, problems = (), (Problem(name, 0, f"not UTF-8 text: {e}"),)
            else:
                docs, problems = _parse_file(name, text, self.options.default_namespace)
            if problems:
                # Keep serving what this file last held when it was good.
                docs = prev.docs if prev is not None else ()
                for pr in problems:
                    log.warning("bad file, serving its last good content", problem=str(pr))
            seen[name] = _FileResult(digest, docs, problems)
        changed = seen.keys() != self._files.keys() or any(seen[k] is not self._files.get(k) for k in seen)
        self._files = seen
        if self._state is not None and not changed:
            return self._state
        self._generation += 1
        self._state = self._assemble()
        return self._state

    def _assemble(self) -> FolderState:
        buckets: dict[str, list[dict[str, Any]]] = {
            "objects": [],
            "services": [],
            "endpoint_slices": [],
            "gateways": [],
            "secrets": [],
        }
        origins: dict[ObjectKey, tuple[str, int]] = {}
        problems: list[Problem] = list(self._behind)
        for name in sorted(self._files):
            fr = self._files[name]
            problems.extend(fr.problems)
            for doc in fr.docs:
                first = origins.get(doc.key)
                if first is not None:
                    kind, ns, obj = doc.key
                    problems.append(
                        Problem(
                            name,
                            doc.line,
                            f"{kind} {ns + '/' if ns else ''}{obj} is already defined at "
                            f"{first[0]}:{first[1]}; this copy is ignored",
                        )
                    )
                    continue
                origins[doc.key] = (name, doc.line)
                raw = doc.raw
                if doc.bucket == "endpoint_slices" and self._rounds:
                    raw = _with_readiness(raw, self._up)
                buckets[doc.bucket].append(raw)
        inputs = Inputs(
            objects=tuple(buckets["objects"]),
            services=tuple(buckets["services"]),
            endpoint_slices=tuple(buckets["endpoint_slices"]),
            gateways=tuple(buckets["gateways"]),
            secrets=tuple(buckets["secrets"]),
        )
        return FolderState(
            inputs=inputs,
            problems=tuple(problems),
            origins=origins,
            files=len(self._files),
            generation=self._generation,
            loaded_at=time.time(),
        )

    def _probe_targets(self) -> dict[_Target, _TargetInfo]:
        """Every (address, port) a read EndpointSlice lists and does not itself mark not ready,
        with the slice it comes from (the first, for one listed twice) and its position in it."""
        if self._targets_of is self._files:
            return self._targets
        out: dict[_Target, _TargetInfo] = {}
        for name in sorted(self._files):
            for doc in self._files[name].docs:
                if doc.bucket != "endpoint_slices" or doc.raw.get("addressType") == "FQDN":
                    continue  # (translation serves IP endpoints only: no name is looked up)
                ports = [p["port"] for p in doc.raw.get("ports") or ()]
                where = (name, doc.line, f"{doc.key[1]}/{doc.key[2]}")
                for i, ep in enumerate(doc.raw.get("endpoints") or ()):
                    if (ep.get("conditions") or {}).get("ready") is False:
                        continue  # not ready whatever a probe says
                    for a in ep.get("addresses") or ():
                        for port in ports:
                            out.setdefault((str(a), port), _TargetInfo(*where, i))
        self._targets, self._targets_of = out, self._files
        return out

    async def probe(self, *, only_new: bool = False) -> bool:
        """One probe round; True if what is served changed (an endpoint's readiness, or whether
        probing is behind). With ``only_new``, only endpoints never probed yet.

        The cost of a round is bounded: at most ``probe_max_per_round`` endpoints, at most
        ``probe_concurrency`` connections at a time, each given ``probe_timeout``, and no new
        connection once the round has run for ``probe_interval`` (so a round takes at most
        their sum). Endpoints last seen ready go first, then new ones (one from each slice in
        turn, so a slice of thousands cannot crowd out the others), then those seen not ready,
        each group oldest probe first; an endpoint a round did not get to keeps its last verdict
        and goes early in the next.

        A verdict needs evidence. A refused connection (or any other error) is one; a timeout
        is one only if the event loop noticed it on time (a late timer means the loop was too
        busy to tell, not that the endpoint is) and, for an endpoint seen ready, only the second
        in a row.
        """
        opts = self.options
        now = time.monotonic()
        targets = self._probe_targets()
        records = {t: self._probes.get(t) or _ProbeRecord(since=now) for t in targets}
        self._probes = records
        candidates = [t for t in targets if records[t].up is None] if only_new else list(targets)

        def rank(t: _Target) -> tuple[int, float, int, _Target]:
            r = records[t]
            return (0 if r.up else 1 if r.up is None else 2, r.last, targets[t].index, t)

        order = sorted(candidates, key=rank)[: opts.probe_max_per_round]
        deadline = now + opts.probe_interval  # no new connection after this
        queue = iter(order)

        async def worker() -> None:
            for t in queue:
                if time.monotonic() >= deadline:
                    return
                verdict = await self._probe_one(t)
                if verdict is not None:
                    records[t].record(verdict, time.monotonic())

        if order:
            async with anyio.create_task_group() as tg:
                for _ in range(min(opts.probe_concurrency, len(order))):
                    tg.start_soon(worker)
        return self._after_round(records, targets)

    async def _probe_one(self, target: _Target) -> _Verdict | None:
        address, port = target
        timeout = self.options.probe_timeout
        started = time.monotonic()
        try:
            with anyio.fail_after(timeout):
                stream = await anyio.connect_tcp(address, port)
            await stream.aclose()
        except TimeoutError:
            if time.monotonic() - started > timeout + min(0.1, timeout / 2):
                return None  # noticed late: the loop was too busy to tell, no evidence either way
            return _Verdict.TIMEOUT
        except Exception:  # refused, unreachable, a port or address no socket takes: not ready
            return _Verdict.FAILED
        return _Verdict.UP

    def _after_round(self, records: dict[_Target, _ProbeRecord], targets: dict[_Target, _TargetInfo]) -> bool:
        now = time.monotonic()
        first, self._rounds = not self._rounds, self._rounds + 1
        up = frozenset(t for t, r in records.items() if r.up)
        changed = first or up != self._up
        for address, port in sorted(self._up - up):
            if (address, port) in records:
                log.info("endpoint not ready: connection refused or timed out", address=address, port=port)
        for address, port in sorted(up - self._up):
            log.info("endpoint ready", address=address, port=port)
        self._up = up
        # Behind: an endpoint not probed (conclusively) for longer than two rounds and a timeout.
        limit = 2 * self.options.probe_interval + self.options.probe_timeout
        late: dict[tuple[str, int, str], int] = {}
        total: dict[tuple[str, int, str], int] = {}
        for t, info in targets.items():
            key = (info.file, info.line, info.slice)
            total[key] = total.get(key, 0) + 1
            r = records[t]
            if now - (r.last if r.last else r.since) > limit:
                late[key] = late.get(key, 0) + 1
        behind = tuple(
            Problem(
                file,
                line,
                f"EndpointSlice {name}: endpoint probing is behind: some of its {total[file, line, name]} "
                f"endpoint ports were not probed in the last {limit:g}s (at most "
                f"{self.options.probe_max_per_round} a round, {self.options.probe_concurrency} at once); "
                "each is served as last probed, and not ready until probed once",
            )
            for file, line, name in sorted(late)
        )
        if behind != self._behind:
            if behind and not self._behind:
                log.warning("endpoint probing is behind", slices=len(behind), endpoints=len(targets))
            self._behind = behind
            changed = True
        return changed

    def _reassemble(self) -> FolderState:
        self._generation += 1
        self._state = self._assemble()
        return self._state

    async def watch(self) -> AsyncGenerator[FolderState, None]:
        """Yield the first reading, then a new reading after each debounced change (and each
        change of endpoint readiness), forever."""
        # Scans and reads run in a worker thread: a slow disk or network share never stalls
        # the event loop that serves xDS and the admin API.
        opts = self.options
        watcher = _Watcher.start(self.directory) if opts.notify else None
        try:
            # (inotify is in place before the first scan: nothing written after it is missed)
            sig = await anyio.to_thread.run_sync(self._signature_and_watches, watcher)
            state = await anyio.to_thread.run_sync(self.load)
            if opts.probe_endpoints and await self.probe():
                state = self._reassemble()
            yield state
            now_ = time.monotonic()
            next_probe = now_ + opts.probe_interval
            next_scan = now_ + (opts.rescan_interval if watcher is not None else opts.poll_interval)
            while True:
                notified = False
                if watcher is not None:
                    due = min(next_scan, next_probe if opts.probe_endpoints else next_scan)
                    if await watcher.wait(due):
                        await watcher.settle(opts.notify_debounce, opts.rescan_interval)
                        notified = True
                else:
                    await anyio.sleep(max(0.0, next_scan - time.monotonic()))
                if opts.probe_endpoints and time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + opts.probe_interval
                    if await self.probe():
                        state = self._reassemble()
                        yield state
                if not notified and time.monotonic() < next_scan:
                    continue
                period = opts.rescan_interval if watcher is not None else opts.poll_interval
                next_scan = time.monotonic() + period
                now = await anyio.to_thread.run_sync(self._signature_and_watches, watcher)
                if not notified:
                    if now == sig:
                        continue
                    # A scan found a change: wait for the folder to be quiet for `debounce`.
                    while True:
                        await anyio.sleep(opts.debounce)
                        again = await anyio.to_thread.run_sync(self._signature_and_watches, watcher)
                        if again == now:
                            break
                        now = again
                sig = now
                new = await anyio.to_thread.run_sync(self.load)
                if opts.probe_endpoints and new is not state and await self.probe(only_new=True):
                    new = self._reassemble()  # new endpoints are served once probed, as a kubelet does
                if new is not state:
                    state = new
                    yield state
        finally:
            if watcher is not None:
                watcher.close()

    def _signature_and_watches(self, watcher: _Watcher | None) -> tuple[tuple[str, int, int, int], ...]:
        sig = self.signature()
        if watcher is not None:
            watcher.sync(self._dirs)
        return sig


_WATCH_MASK = (
    _inotify.IN_CREATE
    | _inotify.IN_DELETE
    | _inotify.IN_MODIFY
    | _inotify.IN_CLOSE_WRITE
    | _inotify.IN_MOVED_FROM
    | _inotify.IN_MOVED_TO
    | _inotify.IN_ATTRIB
    | _inotify.IN_DELETE_SELF
    | _inotify.IN_MOVE_SELF
)
_RELEASE = _inotify.IN_CLOSE_WRITE | _inotify.IN_DELETE | _inotify.IN_MOVED_FROM


class _Watcher:
    """The folder tree's inotify watches and which of its files are still open for writing."""

    def __init__(self, notify: _inotify.Inotify) -> None:
        self._notify = notify
        self._writing: set[tuple[int, str]] = set()
        """(watch, name) of files written since their last close."""

    @classmethod
    def start(cls, directory: Path) -> _Watcher | None:
        """A watcher on ``directory``, or None (logged) where inotify cannot be used."""
        if not _inotify.available():
            log.info("inotify is not available: polling the folder", folder=str(directory))
            return None
        try:
            notify = _inotify.Inotify()
        except OSError as e:
            log.warning("inotify refused: polling the folder", folder=str(directory), error=str(e))
            return None
        watcher = cls(notify)
        watcher.sync((directory,))
        return watcher

    def sync(self, dirs: tuple[Path, ...] | list[Path]) -> None:
        """Watch every folder in ``dirs`` (adding a watch is idempotent). A folder that cannot be
        watched (removed meanwhile, ``max_user_watches`` reached) is left to the rescan."""
        watched = set(self._notify.watches.values())
        for d in dirs:
            if str(d) in watched:
                continue
            try:
                self._notify.add(d, _WATCH_MASK)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("cannot watch a folder: the rescan covers it", folder=str(d), error=str(e))

    def _take(self) -> bool:
        """Read the queued events; True if one may change what the folder serves."""
        relevant = False
        for e in self._notify.read():
            if e.mask & _inotify.IN_Q_OVERFLOW:
                self._writing.clear()  # events were lost: nothing is known to be open
                relevant = True
                continue
            if e.name.startswith("."):
                continue  # editors' swap and backup files, as the scan skips them
            if (
                e.mask & (_inotify.IN_IGNORED | _inotify.IN_MOVE_SELF | _inotify.IN_DELETE_SELF)
                and not e.name
            ):
                # A watched folder went away or moved: forget its watch, so the next scan
                # watches whatever folder has that path now.
                self._notify.remove(e.wd)
                relevant = True
                continue
            key = (e.wd, e.name)
            if e.mask & _RELEASE:
                self._writing.discard(key)
            elif e.mask & _inotify.IN_MODIFY and e.name.endswith((".yaml", ".yml")):
                self._writing.add(key)  # only a file the folder serves holds the reload
            relevant = True
        return relevant

    async def wait(self, until: float) -> bool:
        """Wait until the monotonic time ``until`` at most; True as soon as a relevant event came."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return self._take()
            with anyio.move_on_after(left):
                await anyio.wait_readable(self._notify.fileno())
            if self._take():
                return True

    async def settle(self, debounce: float, hold_max: float) -> None:
        """Return once no relevant event has come for ``debounce`` and no file is open for
        writing, or ``hold_max`` after the first event, whichever is first."""
        give_up = time.monotonic() + hold_max
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                if self._writing:
                    log.info(
                        "a file is still open for writing: loading the folder anyway",
                        files=len(self._writing),
                    )
                    self._writing.clear()
                return
            quiet = left if self._writing else min(debounce, left)
            if not await self.wait(time.monotonic() + quiet) and not self._writing:
                return

    def close(self) -> None:
        self._notify.close()


def _with_readiness(raw: dict[str, Any], up: frozenset[_Target]) -> dict[str, Any]:
    """A copy of an EndpointSlice whose endpoints that no probe found ready (none of their
    addresses connected on any port) are marked not ready."""
    ports = [p["port"] for p in raw.get("ports") or ()]
    endpoints = []
    touched = False
    for ep in raw.get("endpoints") or ():
        addrs = [str(a) for a in ep.get("addresses") or ()]
        unreachable = ports and not any((a, port) in up for a in addrs for port in ports)
        if unreachable and (ep.get("conditions") or {}).get("ready") is not False:
            ep = {**ep, "conditions": {**(ep.get("conditions") or {}), "ready": False}}
            touched = True
        endpoints.append(ep)
    return {**raw, "endpoints": endpoints} if touched else raw
