"""Start one container process: enter the pod's network namespace, make a private mount namespace
where the pod's volumes sit at their ``mountPath``, drop to ``runAsUser``/``runAsGroup``, exec.

Run as ``python -I _launch.py SPEC.json`` by the process kubelet; standard library only, so it
starts fast and imports nothing of the project. Why a mount namespace: a container's volumes must
appear at their paths (``/var/run/secrets/kubernetes.io/serviceaccount``, ``/etc/hosts``) without
touching the host's files; every mount made here vanishes with the process.

If the program cannot be started, the reason goes to the spec's ``term`` file and the exit code is
128, which the kubelet reports as a ``StartError`` the way a container runtime does.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {src} on {dst}")


def under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def resolve(path: str) -> str:
    """Resolve symlinks of the existing part of ``path`` (``/var/run`` is ``/run``)."""
    head, tail = path, []
    while head != "/" and not os.path.lexists(head):
        head, t = os.path.split(head)
        tail.insert(0, t)
    return os.path.join(os.path.realpath(head), *tail)


def existing_parent(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def setup(spec: dict) -> None:  # type: ignore[type-arg]
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Sources may live under /tmp or /run, which get private mounts below: hold them open
    # first and mount through /proc/self/fd (the kernel follows those links to the original).
    scratch = spec["scratch"]
    os.makedirs(f"{scratch}/tmp", exist_ok=True)
    os.chmod(f"{scratch}/tmp", 0o1777)
    keep = [p for p in spec.get("root_keep", []) if os.path.isdir(p)]
    host_keep = [p for p in spec.get("host_keep", []) if os.path.isdir(p)]
    shm = spec.get("shm")
    held = {
        p: os.open(p, os.O_PATH)
        for p in {scratch, *keep, *host_keep, *(m["src"] for m in spec["mounts"]), *([shm] if shm else [])}
    }
    fd = lambda p: f"/proc/self/fd/{held[p]}"  # noqa: E731
    mounts = [
        dict(m, dst=resolve(m["dst"]), src=fd(m["src"]), isdir=os.path.isdir(m["src"]))
        for m in spec["mounts"]
    ]
    mount("tmpfs", "/run", "tmpfs", 0, "mode=755")
    if keep:
        # root's home is 0700 here; a non-root container sees a fresh one holding only the
        # toolchains its program needs (Python, the test binaries), read-only.
        mount("tmpfs", "/root", "tmpfs", 0, "mode=755")
        for p in keep:
            os.makedirs(p, exist_ok=True)
            mount(fd(p), p, None, MS_BIND | MS_REC)
            mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    mount(f"{fd(scratch)}/tmp", "/tmp", None, MS_BIND)
    if shm:
        # The pod's /dev/shm (shm_open's directory), not the host's.
        mount(fd(shm), "/dev/shm", None, MS_BIND)
    tmpfs = ["/run", "/tmp"]
    # Host paths the container must keep seeing at the same place (read-only), if masked above.
    masked = [*tmpfs, "/root"] if keep else tmpfs
    for p in host_keep:
        if under(p, masked) and not any(under(p, [k]) for k in keep):
            os.makedirs(p, exist_ok=True)
            mount(fd(p), p, None, MS_BIND | MS_REC)
            mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    # A mount point missing on the host: put a writable overlay on its nearest existing
    # directory, so the directory can be created without changing the host.
    overlaid: list[str] = []
    for m in sorted(mounts, key=lambda m: m["dst"].count("/")):
        if os.path.lexists(m["dst"]) or under(m["dst"], tmpfs + overlaid):
            continue
        parent = existing_parent(m["dst"])
        if parent == "/":
            os.makedirs(m["dst"], exist_ok=True)  # documented: top-level mount points are made on the host
            continue
        n = len(overlaid)
        base = f"{fd(scratch)}/ovl{n}"
        os.makedirs(f"{base}/upper", exist_ok=True)
        os.makedirs(f"{base}/work", exist_ok=True)
        mount("overlay", parent, "overlay", 0, f"lowerdir={parent},upperdir={base}/upper,workdir={base}/work")
        overlaid.append(parent)
    for m in sorted(mounts, key=lambda m: m["dst"].count("/")):
        dst, src = m["dst"], m["src"]
        if m["isdir"]:
            os.makedirs(dst, exist_ok=True)
        elif not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "a").close()
        mount(src, dst, None, MS_BIND | MS_REC)
        if m.get("ro"):
            mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    groups = [int(g) for g in spec.get("groups", [])]
    gid, uid = spec.get("gid"), spec.get("uid")
    if uid is not None:
        # The container's user owns its stdout and stderr, as runc makes it own them: a program
        # that reopens /dev/stdout (Envoy's access log) can, as in a real runtime. Only the
        # container's own log file; never a device such as /dev/null.
        for n in (1, 2):
            if stat.S_ISREG(os.fstat(n).st_mode):
                os.fchown(n, uid, gid if gid is not None else -1)
    if uid is not None or gid is not None or groups:
        os.setgroups(groups)
    if gid is not None:
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)
    os.chdir(spec.get("cwd") or "/")


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    argv, env = spec["argv"], spec["env"]
    # Opened before dropping privileges; not inherited by the program (close-on-exec).
    term = os.open(spec["term"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        setup(spec)
        if not argv:
            raise OSError("no command specified")
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if exe is None:
            raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
        os.execve(exe, argv, env)
    except OSError as e:
        msg = f"failed to start container process: {e}"
        print(msg, file=sys.stderr, flush=True)
        os.write(term, msg.encode())
        os._exit(128)


if __name__ == "__main__":
    main()
