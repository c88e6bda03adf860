"""``python -m tests.bed up|status|logs|down``: a test bed for a person (``just bed ...``).

``up`` starts a detached supervisor (``serve``) that owns the bed, waits until the bed is ready
and prints the kubeconfig; ``down`` stops the supervisor, which stops every process and removes
every namespace of the bed (and sweeps them itself if the supervisor is gone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("TSGW_BED_DIR", "/tmp/tsgw-bed"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(d: Path) -> int | None:
    try:
        return int((d / "serve.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def serve(args: argparse.Namespace) -> int:
    from tests.bed import Bed, BedOptions

    d: Path = args.dir
    (d / "serve.pid").write_text(str(os.getpid()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bed = Bed(d, BedOptions(nodes=args.nodes, dns=not args.no_dns, tailnet=args.tailnet or args.devices > 0))
    try:
        t = time.monotonic()
        bed.start()
        if bed.tailnet is not None:
            key = bed.tailnet.preauth_key_for()  # also makes the user "bed" for the printed hint
            for n in range(args.devices):
                bed.tailnet.device(f"device{n}", key)
        (d / "ready").write_text(json.dumps({**bed.describe(), "up_s": round(time.monotonic() - t, 2)}))
        stop.wait()
    except BaseException as e:
        (d / "failed").write_text(f"{type(e).__name__}: {e}")
        raise
    finally:
        bed.stop()
        (d / "serve.pid").unlink(missing_ok=True)
        (d / "ready").unlink(missing_ok=True)
    return 0


def up(args: argparse.Namespace) -> int:
    d: Path = args.dir
    pid = _pid(d)
    if pid and _alive(pid):
        print(f"a bed is already running from {d} (pid {pid}); `just bed down` first", file=sys.stderr)
        return 1
    if d.exists() and any(d.iterdir()):
        if not ((d / "serve.log").exists() or (d / "bed.json").exists()):
            print(f"{d} is not empty and not a bed's directory; choose another --dir", file=sys.stderr)
            return 1
        shutil.rmtree(d)  # a fresh bed each time: no etcd data or logs of the last one
    d.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tests.bed", "serve", f"--nodes={args.nodes}", f"--dir={d}"]
    if args.no_dns:
        argv.append("--no-dns")
    if args.tailnet:
        argv.append("--tailnet")
    if args.devices:
        argv.append(f"--devices={args.devices}")
    with (d / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    while not (d / "ready").exists():
        if proc.poll() is not None or (d / "failed").exists():
            print(
                f"bed failed to start: {(d / 'failed').read_text() if (d / 'failed').exists() else ''}\n"
                f"log: {d / 'serve.log'}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.2)
    info = json.loads((d / "ready").read_text())
    names = ", ".join(n["name"] for n in info["nodes"])
    print(f"bed up in {info['up_s']} s with {len(info['nodes'])} node(s): {names}")
    print(f"kubeconfig: {info['kubeconfig']}")
    print(f"  export KUBECONFIG={info['kubeconfig']}; kubectl get pods -A")
    if tn := info.get("tailnet"):
        print(f"tailnet: Headscale {tn['headscale']} (from nodes and pods), netns {tn['netns']}")
        print(
            f"  pre-auth key: headscale -c {tn['headscale_config']} preauthkeys create"
            f" --user {tn['user_id']} --reusable"
        )
        for dev in tn["devices"]:
            print(
                f"  device {dev['name']}: tailnet {dev['tailnet_ip']}, fabric {dev['address']}, "
                f"netns {dev['netns']}; its server answers with its name on :8080 (HTTP), :9000 (TCP); "
                f"tailscale --socket={dev['socket']} status"
            )
    print("  just bed status | just bed logs POD [-n NAMESPACE] | just bed down")
    return 0


def status(args: argparse.Namespace) -> int:
    d: Path = args.dir
    pid = _pid(d)
    if not pid or not _alive(pid) or not (d / "ready").exists():
        print(f"no bed running from {d}")
        return 1
    info = json.loads((d / "ready").read_text())
    print(f"bed {info['prefix']} (supervisor pid {pid}), API {info['api']}, kubeconfig {info['kubeconfig']}")
    from tools.testbin import bin_path

    subprocess.run(
        [
            str(bin_path("kubectl")),
            f"--kubeconfig={info['kubeconfig']}",
            "get",
            "nodes,pods",
            "-A",
            "-o",
            "wide",
        ],
        check=False,
    )
    return 0


def logs(args: argparse.Namespace) -> int:
    d: Path = args.dir
    files = sorted(d.glob(f"nodes/*/logs/{args.namespace}_{args.pod}_*.log"))
    if args.container:
        files = [f for f in files if f.name == f"{args.namespace}_{args.pod}_{args.container}.log"]
    if not files:
        print(f"no logs for pod {args.namespace}/{args.pod} in {d}", file=sys.stderr)
        return 1
    for f in files:
        if len(files) > 1:
            print(f"==> {f.name} <==")
        sys.stdout.write(f.read_text(errors="replace"))
    return 0


def down(args: argparse.Namespace) -> int:
    d: Path = args.dir
    pid = _pid(d)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    # Whatever the supervisor could not clean up (it was killed, or crashed).
    from tests.bed import _topology

    bed = d / "bed.json"
    if bed.exists():
        info = json.loads(bed.read_text())
        left = _topology.sweep(info["prefix"])
        _topology.release_index(info["index"])
        if left:
            print(f"swept namespaces left behind: {left}")
    print("bed down")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bed", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "serve"):
        s = sub.add_parser(name)
        s.add_argument("--nodes", type=int, default=1)
        s.add_argument("--no-dns", action="store_true", help="do not deploy CoreDNS")
        s.add_argument("--tailnet", action="store_true", help="run Headscale in the bed's tailnet namespace")
        s.add_argument(
            "--devices",
            type=int,
            default=0,
            metavar="N",
            help="join N tailnet devices (device0..), each with a test server; implies --tailnet",
        )
        s.add_argument("--dir", type=Path, default=argparse.SUPPRESS)
    sub.add_parser("status")
    lg = sub.add_parser("logs")
    lg.add_argument("pod")
    lg.add_argument("-n", "--namespace", default="default")
    lg.add_argument("-c", "--container")
    sub.add_parser("down")
    args = p.parse_args(argv)
    return {"up": up, "serve": serve, "status": status, "logs": logs, "down": down}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
