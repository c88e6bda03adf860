"""tsgw.operator.Standalone in-process: folder → translation → snapshots per proxy group, with
the folder's problems (bad files and objects translation did not accept) on the admin API."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from tsgw.admin import AdminClient
from tsgw.operator import Standalone, StandaloneOptions
from tsgw.providers import FileOptions

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "standalone"


@pytest.mark.anyio
async def test_the_folder_is_served_per_proxy_group_and_problems_reach_the_admin_api(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "standalone"))
    # An egress object naming a tailnet that does not exist: valid YAML, not translatable.
    (folder / "orphan.yaml").write_text(
        (folder / "egress.yaml")
        .read_text()
        .replace("name: tailnet-echo", "name: orphan")
        .replace("name: demo\n  targets", "name: nowhere\n  targets")
    )
    sa = Standalone(
        StandaloneOptions(
            directory=folder,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            file=FileOptions(probe_endpoints=False),
        )
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sa.run)
        async with AdminClient(f"127.0.0.1:{sa.admin_port}") as admin:
            groups = sorted({s.group for s in await admin.list_snapshots()})
            assert groups == ["tailnet-echo-tsep.demo", "web-tssvc.demo"]
            (source,) = await admin.list_sources()
            assert source.kind == "folder"
            (problem,) = source.problems
            assert problem.file.endswith("orphan.yaml")
            lines = (folder / "orphan.yaml").read_text().splitlines()
            assert lines[problem.line - 1].startswith("apiVersion:")  # where the object starts
            assert "TailnetNotFound" in problem.reason

            # Deleting the file removes the problem; deleting web.yaml removes its group.
            applied = sa.applied
            (folder / "orphan.yaml").unlink()
            (folder / "web.yaml").unlink()
            with anyio.fail_after(10):
                await sa.wait_applied(applied + 1)
            (source,) = await admin.list_sources()
            assert list(source.problems) == []
            assert sa.cache.groups() == ["tailnet-echo-tsep.demo"]
        tg.cancel_scope.cancel()
