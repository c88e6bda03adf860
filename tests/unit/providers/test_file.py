"""providers.FileProvider: what a folder of YAML serves, and how bad files are reported."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import anyio
import pytest

import tsgw.providers
from tests.support.process import refusing_port
from tsgw.providers import FileOptions, FileProvider

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
            "metadata: {name: e, labels: {kubernetes.io/service-name: s}}\nports: 5\n",
            "ports: must be a list",
        ),
        (
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: e, labels: {kubernetes.io/service-name: s}}\n"
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
