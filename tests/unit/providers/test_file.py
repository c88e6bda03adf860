"""providers.FileProvider: what a folder of YAML serves, and how bad files are reported."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
from pathlib import Path

import anyio
import pytest

import tsgw.providers
from tests.support.process import free_port, refusing_port
from tsgw.providers import FileOptions, FileProvider, FolderState, Problem

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "standalone"


def test_public_surface_is_pinned() -> None:
    assert sorted(tsgw.providers.__all__) == [
        "FileOptions",
        "FileProvider",
        "FolderState",
        "GATEWAYS",
        "KubeProvider",
        "KubeProviderOptions",
        "Problem",
        "tsgw_resources",
    ]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "standalone"))


def test_the_example_folder_loads_without_problems(folder: Path) -> None:
    state = FileProvider(folder).load()
    assert state.problems == ()
    kinds = sorted(o["kind"] for o in state.inputs.objects)
    assert kinds == ["TailscaleEndpoints", "TailscaleServices", "TailscaleTailnet"]
    assert sorted(s["metadata"]["name"] for s in state.inputs.services) == ["web-primary", "web-standby"]
    assert len(state.inputs.endpoint_slices) == 2
    assert state.origins[("TailscaleServices", "demo", "web")][0].endswith("web.yaml")


def test_a_schema_error_names_file_line_and_reason_and_keeps_the_last_good_content(folder: Path) -> None:
    provider = FileProvider(folder)
    good = provider.load()
    web = folder / "web.yaml"
    lines = web.read_text().splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if "protocol: HTTP " in ln)
    lines[idx] = lines[idx].replace("HTTP ", "UDP  ")
    web.write_text("".join(lines))
    bad = provider.load()
    assert len(bad.problems) == 1
    p = bad.problems[0]
    assert p.file.endswith("web.yaml")
    assert p.line == idx + 1
    assert p.reason.startswith("spec.ports[0].protocol: Tailscale Services carry TCP only")
    assert bad.inputs.objects == good.inputs.objects  # the last good web.yaml is still served


def test_broken_yaml_is_reported_with_its_line(folder: Path) -> None:
    (folder / "extra.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
    state = FileProvider(folder).load()
    assert [(p.file.rsplit("/", 1)[-1], p.line) for p in state.problems] == [("extra.yaml", 4)]
    assert state.problems[0].reason.startswith("invalid YAML")


def test_a_missing_required_field_points_at_its_parent(folder: Path) -> None:
    (folder / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  type: ClusterIP\n"
    )
    (p,) = FileProvider(folder).load().problems
    assert (p.line, p.reason.split(":")[0]) == (5, "spec.ports")


def test_an_object_defined_twice_is_served_once_and_reported(folder: Path) -> None:
    shutil.copy(folder / "web.yaml", folder / "web-copy.yaml")
    state = FileProvider(folder).load()
    assert sum(1 for o in state.inputs.objects if o["kind"] == "TailscaleServices") == 1
    (p,) = state.problems
    assert "already defined" in p.reason


def test_unsupported_kinds_are_rejected(folder: Path) -> None:
    (folder / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (p,) = FileProvider(folder).load().problems
    assert "not read in standalone mode" in p.reason


def test_an_unchanged_folder_gives_the_same_state(folder: Path) -> None:
    provider = FileProvider(folder)
    assert provider.load() is provider.load()


@pytest.mark.anyio
async def test_watch_yields_a_new_state_after_an_edit(folder: Path) -> None:
    provider = FileProvider(folder, FileOptions(probe_endpoints=False))
    gen = provider.watch()
    with anyio.fail_after(10):
        first = await gen.__anext__()
    web = folder / "web.yaml"
    web.write_text(web.read_text().replace("priority: 1", "priority: 2"))
    with anyio.fail_after(10):
        second = await gen.__anext__()
    await gen.aclose()
    assert second.generation == first.generation + 1
    svc = next(o for o in second.inputs.objects if o["kind"] == "TailscaleServices")
    assert [b["priority"] for b in svc["spec"]["backends"]] == [0, 2]


@pytest.mark.anyio
async def test_an_endpoint_that_refuses_connections_is_served_not_ready(folder: Path) -> None:
    backends = folder / "backends.yaml"
    text = backends.read_text()
    with contextlib.ExitStack() as held:
        for port in ("18081", "18082"):  # bound, never listening: refuses, and nothing can take it
            text = text.replace(f"port: {port}", f"port: {held.enter_context(refusing_port())}")
        backends.write_text(text)
        provider = FileProvider(folder)
        gen = provider.watch()
        with anyio.fail_after(10):
            state = await gen.__anext__()
        await gen.aclose()
    for es in state.inputs.endpoint_slices:
        assert [ep["conditions"]["ready"] for ep in es["endpoints"]] == [False]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- 1\n- 2\n", "a document must be a mapping"),
        ("{[1]: 2}\n", "invalid YAML"),
        ("!!python/object:os.system x\n", "invalid YAML"),
        (
            "apiVersion: gateway.tailscale.com/v1alpha1\nkind: TailscaleServices\nmetadata: []\nspec: {}\n",
            "metadata: Required value",
        ),
        (
            "apiVersion: gateway.tailscale.com/v1alpha1\nkind: TailscaleEndpoints\nmetadata: {name: a}\n"
            "spec: {targets: 7, tailnetRef: x}\n",
            "spec.tailnetRef: must be an object",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 1, name: 5}]}\n",
            "spec.ports[0].name: must be a string",
        ),
        (
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nports: 5\n",
            "ports: must be a list",
        ),
        (
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\n"
            "endpoints: [{addresses: [1.2.3.4], conditions: 3}]\n",
            "endpoints[0].conditions: must be an object",
        ),
    ],
)
def test_odd_documents_are_problems_not_crashes(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "odd.yaml").write_text(text)
    state = FileProvider(tmp_path).load()
    assert [reason in p.reason for p in state.problems] == [True]
    assert state.inputs.objects == ()
    assert state.inputs.services == ()
    assert state.inputs.endpoint_slices == ()


# --- issue 17 ------------------------------------------------------------------------------------


def _replace_port(folder: Path, old: str, new: str) -> int:
    """Replace ``port: old`` in backends.yaml by ``port: new``; returns its 1-based line."""
    backends = folder / "backends.yaml"
    lines = backends.read_text().splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if f"port: {old}" in ln)
    lines[idx] = lines[idx].replace(f"port: {old}", f"port: {new}")
    backends.write_text("".join(lines))
    return idx + 1


@pytest.mark.anyio
async def test_an_endpoint_slice_port_out_of_range_is_a_problem_and_the_folder_still_starts(
    folder: Path,
) -> None:
    line = _replace_port(folder, "18081", "70000")
    provider = FileProvider(folder)
    gen = provider.watch()
    with anyio.fail_after(10):
        state = await gen.__anext__()  # probes once: an out-of-range port must not reach it
    await gen.aclose()
    (p,) = state.problems
    assert (p.file.endswith("backends.yaml"), p.line) == (True, line)
    assert p.reason.startswith("ports[0].port:")
    assert "65535" in p.reason
    ports = [pt["port"] for es in state.inputs.endpoint_slices for pt in es["ports"]]
    assert 70000 not in ports


_SVC = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: demo}\n"
_ES = (
    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: e, namespace: demo, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\n"
)
_GW = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: demo}\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            _SVC + "spec:\n  ports:\n  - port: 100000000000000000000000\n",
            6,
            "spec.ports[0].port: Invalid value",
        ),
        (_SVC + "spec:\n  ports:\n  - port: 0\n", 6, "must be between 1 and 65535"),
        (
            _SVC + "spec:\n  ports:\n  - {port: 80, name: a}\n  - {port: 81}\n",
            7,
            "spec.ports[1].name: Required",
        ),
        (_SVC + "spec:\n  ports:\n  - {port: 80, name: a}\n  - {port: 81, name: a}\n", 7, "Duplicate value"),
        (_SVC + "spec:\n  ports:\n  - {port: 80, name: HTTP}\n", 6, "spec.ports[0].name: Invalid value"),
        (_SVC + "spec:\n  ports:\n  - {port: 80, protocol: QUIC}\n", 6, "Unsupported value"),
        (_SVC + "spec:\n  ports:\n  - {port: 80, targetPort: 70000}\n", 6, "spec.ports[0].targetPort"),
        (
            'apiVersion: v1\nkind: Service\nmetadata: {name: "s\\x01"}\nspec: {ports: [{port: 80}]}\n',
            3,
            "metadata.name: Invalid value",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: 1abc}\nspec: {ports: [{port: 80}]}\n",
            3,
            "a DNS-1035 label",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: Demo}\n"
            "spec: {ports: [{port: 80}]}\n",
            3,
            "metadata.namespace: Invalid value",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {app: 'a b'}\n"
            "spec: {ports: [{port: 80}]}\n",
            5,
            "metadata.labels.app: Invalid value",
        ),
        (_ES + "ports: [{port: 70000}]\n", 5, "ports[0].port: Invalid value"),
        (_ES + "ports: [{port: -1}]\n", 5, "between 0 and 65535"),
        (
            _ES + "ports: [{port: 8080}]\nendpoints: [{addresses: [web-0]}]\n",
            6,
            "must be a valid IPv4 address",
        ),
        (
            _ES + "ports: [{port: 8080}]\nendpoints: [{addresses: ['::1']}]\n",
            6,
            "must be a valid IPv4 address",
        ),
        (_ES + "ports: [{port: 8080}]\nendpoints: [{addresses: [0.0.0.0]}]\n", 6, "may not be unspecified"),
        (_ES.replace("IPv4", "IPv5") + "ports: [{port: 8080}]\n", 4, "addressType: Unsupported value"),
        (_ES.replace("addressType: IPv4\n", "") + "ports: [{port: 80}]\n", 1, "addressType: Required value"),
        (_GW + "spec:\n  gatewayClassName: eg\n  listeners: x\n", 6, "spec.listeners: must be a list"),
        (
            _GW
            + "spec:\n  gatewayClassName: eg\n  listeners:\n  - {name: a, port: 1.0e+23, protocol: HTTP}\n",
            7,
            "must be an integer",
        ),
        (
            _GW + "spec:\n  gatewayClassName: eg\n  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n"
            "  - {name: a, port: 81, protocol: HTTP}\n",
            6,
            "Listener name must be unique",
        ),
        (
            _GW + "spec:\n  gatewayClassName: eg\n  listeners:\n  - {name: a, port: 99999, protocol: HTTP}\n",
            7,
            "spec.listeners[0].port: Invalid value",
        ),
        (_GW + "spec:\n  listeners: []\n", 4, "spec.gatewayClassName: Required value"),
        (
            "apiVersion: gateway.tailscale.com/v1alpha1\nkind: TailscaleTailnet\n"
            'metadata: {name: "t\\n"}\n'
            "spec: {credentials: {secretRef: {namespace: a, name: b}, apiKey: {}}}\n",
            3,
            "metadata.name: Invalid value",
        ),
    ],
)
def test_every_kind_is_validated_as_the_api_server_does(
    text: str, line: int, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    state = FileProvider(tmp_path).load()
    assert [(p.line, reason in p.reason) for p in state.problems] == [(line, True)], state.problems
    inputs = state.inputs
    assert (inputs.objects, inputs.services, inputs.endpoint_slices, inputs.gateways) == ((), (), (), ())


def _release(fifo: Path) -> None:
    """Let a reader blocked opening ``fifo`` go (a test that fails must not hang the run)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # nobody is blocked on it
    os.close(fd)


async def _load(provider: FileProvider) -> FolderState:
    with anyio.fail_after(10):
        return await anyio.to_thread.run_sync(provider.load, abandon_on_cancel=True)


def _problem_files(state: FolderState) -> dict[str, str]:
    return {p.file.rsplit("/", 1)[-1]: p.reason for p in state.problems}


@pytest.mark.anyio
async def test_a_fifo_is_a_problem_and_never_blocks_the_reading(folder: Path) -> None:
    good = FileProvider(folder).load()
    fifo = folder / "x.yaml"
    os.mkfifo(fifo)
    try:
        state = await _load(FileProvider(folder))
    finally:
        _release(fifo)
    assert "not a regular file" in _problem_files(state)["x.yaml"]
    assert state.inputs == good.inputs


@pytest.mark.anyio
async def test_a_link_to_a_device_or_a_huge_file_is_a_problem_and_nothing_of_it_is_read(folder: Path) -> None:
    (folder / "zero.yaml").symlink_to("/dev/zero")
    # Sparse: one byte over the API server's 3 MiB limit.
    fd = os.open(folder / "big.yaml", os.O_CREAT | os.O_WRONLY)
    os.ftruncate(fd, 3 * 1024 * 1024 + 1)
    os.close(fd)
    state = await _load(FileProvider(folder))
    problems = _problem_files(state)
    assert "not a regular file" in problems["zero.yaml"]
    assert "3 MiB" in problems["big.yaml"]
    assert len(state.inputs.objects) == 3


@pytest.mark.anyio
async def test_symlink_loops_and_dangling_links_are_problems(folder: Path) -> None:
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "sub").symlink_to(".")
    (folder / "gone.yaml").symlink_to("nowhere.yaml")
    state = await _load(FileProvider(folder))
    problems = _problem_files(state)
    assert "symlink loop" in problems["loop.yaml"]
    assert "already read" in problems["sub"]
    assert "dangling symlink" in problems["gone.yaml"]
    assert len(state.inputs.objects) == 3  # each object once: sub/ is not read again


@pytest.mark.anyio
async def test_a_file_that_turns_into_a_fifo_keeps_its_last_good_content(folder: Path) -> None:
    provider = FileProvider(folder)
    good = provider.load()
    web = folder / "web.yaml"
    web.unlink()
    os.mkfifo(web)
    try:
        state = await _load(provider)
    finally:
        _release(web)
    assert "not a regular file" in _problem_files(state)["web.yaml"]
    assert state.inputs.objects == good.inputs.objects


def test_a_duplicate_key_is_a_problem_at_its_line(folder: Path) -> None:
    (folder / "dup.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: dup, namespace: demo}\n"
        "spec:\n  ports:\n  - name: http\n    port: 80\n    port: 81\n"
    )
    state = FileProvider(folder).load()
    assert [(p.file.rsplit("/", 1)[-1], p.line) for p in state.problems] == [("dup.yaml", 8)]
    assert 'key "port" already set' in state.problems[0].reason
    assert "line 7" in state.problems[0].reason
    assert "dup" not in [s["metadata"]["name"] for s in state.inputs.services]


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\nspec: {ports: [{port: 80}]}\n",
        "apiVersion: gateway.tailscale.com/v1alpha1\nkind: TailscaleTailnet\nmetadata: {name: t}\n"
        "spec:\n  credentials: {secretRef: {namespace: a, name: b}, apiKey: {}}\n  ? NAME\n  : 1\n",
        "apiVersion: gateway.tailscale.com/v1alpha1\nkind: TailscaleTailnet\nmetadata: {name: t}\n"
        "spec: {credentials: {secretRef: {namespace: a, name: b}, apiKey: {}}, tags: [NAME]}\n",
        "apiVersion: v1\nkind: NAME\nmetadata: {name: t}\n",
    ],
)
def test_a_huge_value_is_cut_short_in_the_problem(tmp_path: Path, text: str) -> None:
    (tmp_path / "huge.yaml").write_text(text.replace("NAME", "x" * 1_000_000))
    (p,) = FileProvider(tmp_path).load().problems
    assert len(p.reason) < 2048


def _flood(folder: Path, slices: int, per_slice: int) -> int:
    """A Service whose EndpointSlices list ``slices * per_slice`` loopback endpoints on a port
    where nothing listens: each refuses at once, locally. Returns that port."""
    port = free_port()
    docs = [
        "apiVersion: v1\nkind: Service\nmetadata: {name: flood, namespace: demo}\n"
        "spec:\n  ports: [{name: http, port: 80}]\n"
    ]
    for s in range(slices):
        eps = "".join(f"  - addresses: [127.{s + 2}.{i // 250}.{i % 250 + 1}]\n" for i in range(per_slice))
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: flood-{s}\n"
            f"  namespace: demo\n  labels: {{kubernetes.io/service-name: flood}}\naddressType: IPv4\n"
            f"ports: [{{name: http, port: {port}}}]\nendpoints:\n{eps}"
        )
    (folder / "flood.yaml").write_text("---\n".join(docs))
    return port


def _listeners(folder: Path) -> list[socket.socket]:
    """Two listening sockets standing in for the example's backends (the kernel completes the
    handshake from the backlog: a connection succeeds with nobody accepting)."""
    socks = []
    for old in ("18081", "18082"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4096)
        _replace_port(folder, old, str(s.getsockname()[1]))
        socks.append(s)
    return socks


def _not_ready(state: FolderState, service: str) -> int:
    return sum(
        1
        for es in state.inputs.endpoint_slices
        if es["metadata"]["labels"]["kubernetes.io/service-name"] == service
        for ep in es["endpoints"]
        if (ep.get("conditions") or {}).get("ready") is False
    )


@pytest.mark.anyio
async def test_thousands_of_unreachable_endpoints_never_mark_the_real_backends_down(folder: Path) -> None:
    socks = _listeners(folder)
    _flood(folder, slices=5, per_slice=1000)
    provider = FileProvider(folder)
    gen = provider.watch()
    behind: list[Problem] = []

    def check(state: FolderState) -> None:
        # The real backends answer: no round, however slow, may serve them not ready.
        assert _not_ready(state, "web-primary") == 0
        assert _not_ready(state, "web-standby") == 0
        assert _not_ready(state, "flood") == 5000
        behind.extend(p for p in state.problems if "probing is behind" in p.reason)

    try:
        with anyio.fail_after(60):
            async for state in gen:
                check(state)
                if behind:
                    break
        # Every state from here on (one follows any change of readiness) through enough rounds
        # to have probed each of the 5,000 endpoints at least once.
        rounds = 1.5 * 5000 / FileOptions().probe_max_per_round
        with anyio.move_on_after(rounds * FileOptions().probe_interval):
            async for state in gen:
                check(state)
    finally:
        await gen.aclose()
        for s in socks:
            s.close()
    # Probing could not keep up with 5,000 endpoints, and the status says so, per slice.
    assert {(p.file.rsplit("/", 1)[-1], p.line) for p in behind} <= {
        ("flood.yaml", n) for n in range(1, 10_000)
    }
    assert {p.reason.split(":")[0] for p in behind} <= {f"EndpointSlice demo/flood-{i}" for i in range(5)}


@pytest.mark.anyio
async def test_a_new_endpoint_is_served_only_once_a_probe_reached_it(folder: Path) -> None:
    socks = _listeners(folder)
    provider = FileProvider(folder)
    gen = provider.watch()
    try:
        with anyio.fail_after(30):
            first = await gen.__anext__()
            assert _not_ready(first, "web-primary") == 0
            backends = folder / "backends.yaml"
            # A second primary endpoint, on an address where nothing listens.
            backends.write_text(
                backends.read_text().replace(
                    "  - addresses: [127.0.0.1]", "  - addresses: [127.0.0.1]\n  - addresses: [127.0.0.9]", 1
                )
            )
            second = await gen.__anext__()
    finally:
        await gen.aclose()
        for s in socks:
            s.close()
    primary = next(es for es in second.inputs.endpoint_slices if es["metadata"]["name"] == "web-primary-1")
    assert [(ep["addresses"], (ep.get("conditions") or {}).get("ready")) for ep in primary["endpoints"]] == [
        (["127.0.0.1"], None),
        (["127.0.0.9"], False),
    ]


@pytest.mark.anyio
async def test_one_timeout_does_not_take_a_ready_endpoint_out(folder: Path) -> None:
    # A listener whose accept queue is full drops new SYNs: connecting to it times out,
    # locally. It is reachable for the first probe (queue empty), then stops answering.
    socks = _listeners(folder)
    full = socks[0]
    full.close()
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    backends = folder / "backends.yaml"
    text = backends.read_text()
    old = text.split("port: ")[2].split()[0]  # the primary slice's port
    backends.write_text(text.replace(f"port: {old}", f"port: {port}"))
    provider = FileProvider(folder, FileOptions(probe_timeout=0.2, probe_interval=0.2))
    provider.load()
    fill: list[socket.socket] = []
    try:
        with anyio.fail_after(30):
            await provider.probe()
            assert ("127.0.0.1", port) in provider._up
            while True:  # fill the accept queue
                c = socket.socket()
                c.setblocking(False)
                fill.append(c)
                if c.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
                    break
                await anyio.sleep(0.01)
                if len(fill) > 4:
                    break
            await provider.probe()
            assert ("127.0.0.1", port) in provider._up  # one timeout: still ready
            await provider.probe()
            assert ("127.0.0.1", port) not in provider._up  # the second in a row: not ready
    finally:
        for c in fill:
            c.close()
        full.close()
        for s in socks[1:]:
            s.close()


def test_tls_secrets_are_read_and_other_secrets_refused(folder: Path) -> None:
    (folder / "certs.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: web-tls, namespace: demo}\ntype: kubernetes.io/tls\n"
        "data: {tls.crt: Y2VydA==, tls.key: a2V5}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: plain, namespace: demo}\ntype: kubernetes.io/tls\n"
        "stringData: {tls.crt: cert, tls.key: key}\n"
    )
    (folder / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: opaque, namespace: demo}\ntype: Opaque\n"
        "data: {password: aHVudGVyMg==}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: nokey, namespace: demo}\ntype: kubernetes.io/tls\n"
        "data: {tls.crt: 'not base64!'}\n"
    )
    state = FileProvider(folder).load()
    assert sorted(s["metadata"]["name"] for s in state.inputs.secrets) == ["plain", "web-tls"]
    reasons = sorted(p.reason for p in state.problems)
    assert len(reasons) == 2
    assert reasons[0].startswith("data[tls.crt]: Invalid value: illegal base64")
    assert reasons[1].startswith('type: Invalid value: "Opaque"')
