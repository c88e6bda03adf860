"""The folder watcher's inotify path (tsgw/providers/_inotify.py and FileProvider.watch), on real
files: edits are seen without a scan, a file still open for writing holds the reload, new
subfolders are watched, and the rescan still catches what inotify cannot see."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from tsgw.providers import FileOptions, FileProvider, FolderState, _inotify

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "standalone"

pytestmark = pytest.mark.skipif(not _inotify.available(), reason="inotify is Linux-only")

# inotify alone: a rescan this far away never happens during a test
NOTIFY_ONLY = FileOptions(probe_endpoints=False, rescan_interval=3600.0)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "standalone"))


def _priorities(state: FolderState) -> list[int]:
    svc = next(o for o in state.inputs.objects if o["kind"] == "TailscaleServices")
    return [b["priority"] for b in svc["spec"]["backends"]]


async def _next(gen: AsyncGenerator[FolderState, None]) -> FolderState:
    with anyio.fail_after(10):
        return await gen.__anext__()


def test_inotify_reports_a_close_after_writing_and_a_rename_into_the_folder(tmp_path: Path) -> None:
    with _inotify.Inotify() as ino:
        wd = ino.add(tmp_path, _inotify.IN_CLOSE_WRITE | _inotify.IN_MOVED_TO)
        assert ino.read() == []  # never blocks
        (tmp_path / "a.yaml").write_text("x: 1\n")
        (tmp_path.parent / "b.tmp").write_text("y: 2\n")
        os.rename(tmp_path.parent / "b.tmp", tmp_path / "b.yaml")
        events = ino.read()
    assert [(e.wd, e.name) for e in events] == [(wd, "a.yaml"), (wd, "b.yaml")]
    assert events[0].mask & _inotify.IN_CLOSE_WRITE
    assert events[1].mask & _inotify.IN_MOVED_TO


def test_parse_reads_consecutive_records_with_padded_names() -> None:
    def record(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    data = record(1, _inotify.IN_MODIFY, b"web.yaml") + record(-1, _inotify.IN_Q_OVERFLOW, b"")
    assert _inotify.parse(data) == [
        _inotify.Event(1, _inotify.IN_MODIFY, 0, "web.yaml"),
        _inotify.Event(-1, _inotify.IN_Q_OVERFLOW, 0, ""),
    ]


def test_adding_a_watch_on_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with _inotify.Inotify() as ino, pytest.raises(FileNotFoundError):
        ino.add(tmp_path / "missing", _inotify.IN_CREATE)


@pytest.mark.anyio
async def test_an_edit_is_loaded_through_inotify_without_a_scan(folder: Path) -> None:
    gen = FileProvider(folder, NOTIFY_ONLY).watch()
    first = await _next(gen)
    web = folder / "web.yaml"
    web.write_text(web.read_text().replace("priority: 1", "priority: 2"))
    second = await _next(gen)
    await gen.aclose()
    assert second.generation == first.generation + 1
    assert _priorities(second) == [0, 2]


@pytest.mark.anyio
async def test_a_file_still_open_for_writing_holds_the_reload(folder: Path) -> None:
    provider = FileProvider(folder, NOTIFY_ONLY)
    gen = provider.watch()
    first = await _next(gen)
    web = folder / "web.yaml"
    text = web.read_text().replace("priority: 1", "priority: 2")
    half = len(text) // 2
    seen: list[FolderState] = []

    async def collect() -> None:
        async for state in gen:
            seen.append(state)
            if _priorities(state) == [0, 2]:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:  # ends when collect() saw the finished file
            tg.start_soon(collect)
            with web.open("w") as f:  # truncate, write half, wait far past the debounce, finish
                f.write(text[:half])
                f.flush()
                await anyio.sleep(0.3)
                f.write(text[half:])
    await gen.aclose()
    # Only the finished file was ever read: no half-written state was served.
    assert [s.generation for s in seen] == [first.generation + 1]
    assert seen[0].problems == ()


@pytest.mark.anyio
async def test_a_save_by_rename_is_loaded(folder: Path) -> None:
    gen = FileProvider(folder, NOTIFY_ONLY).watch()
    await _next(gen)
    web = folder / "web.yaml"
    tmp = folder / ".web.yaml.swp"
    tmp.write_text(web.read_text().replace("priority: 1", "priority: 3"))
    os.rename(tmp, web)
    second = await _next(gen)
    await gen.aclose()
    assert _priorities(second) == [0, 3]


async def _served_until(
    gen: AsyncGenerator[FolderState, None], act: Callable[[], Awaitable[None]], priorities: list[int]
) -> FolderState:
    """Keep reading ``gen`` in the background (so the watcher runs while ``act`` does), run
    ``act``, and return the first state that serves ``priorities``."""
    found: list[FolderState] = []

    async def read() -> None:
        async for state in gen:
            if _priorities(state) == priorities:
                found.append(state)
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await act()
    return found[0]


@pytest.mark.anyio
async def test_a_new_subfolder_is_watched(folder: Path) -> None:
    gen = FileProvider(folder, NOTIFY_ONLY).watch()
    await _next(gen)
    web = folder / "web.yaml"
    sub = folder / "more"

    async def act() -> None:
        sub.mkdir()  # an event: the scan it triggers finds the folder and watches it
        await anyio.sleep(0.3)  # (past that scan, so only the new watch can report what follows)
        # Only the new folder changes (its copy of web.yaml is read first, by path order, and
        # the old one is reported as a duplicate): only a watch on it can report this.
        (sub / "web.yaml").write_text(web.read_text().replace("priority: 1", "priority: 4"))

    state = await _served_until(gen, act, [0, 4])
    await gen.aclose()
    assert state.files == 5
    assert state.origins[("TailscaleServices", "demo", "web")][0].endswith("more/web.yaml")


@pytest.mark.anyio
async def test_a_subfolder_moved_away_and_replaced_is_watched_again(folder: Path, tmp_path: Path) -> None:
    sub = folder / "more"
    sub.mkdir()
    gen = FileProvider(folder, NOTIFY_ONLY).watch()
    await _next(gen)
    web = folder / "web.yaml"

    async def act() -> None:
        os.rename(sub, tmp_path / "moved")  # its watch now follows a folder outside
        sub.mkdir()  # a new folder at the old path
        await anyio.sleep(0.3)  # past the scan those events trigger
        (sub / "web.yaml").write_text(web.read_text().replace("priority: 1", "priority: 7"))

    state = await _served_until(gen, act, [0, 7])
    await gen.aclose()
    assert state.origins[("TailscaleServices", "demo", "web")][0].endswith("more/web.yaml")


@pytest.mark.anyio
async def test_the_rescan_catches_an_edit_inotify_does_not_report(folder: Path, tmp_path: Path) -> None:
    # A file changed through a hard link outside the folder: the event goes to the other folder.
    outside = tmp_path / "outside.yaml"
    os.link(folder / "web.yaml", outside)
    gen = FileProvider(folder, FileOptions(probe_endpoints=False, rescan_interval=0.2)).watch()
    await _next(gen)
    with outside.open("r+") as f:
        text = f.read().replace("priority: 1", "priority: 5")
        f.seek(0)
        f.write(text)
        f.truncate()
    second = await _next(gen)
    await gen.aclose()
    assert _priorities(second) == [0, 5]


@pytest.mark.anyio
async def test_without_inotify_the_folder_is_polled(folder: Path) -> None:
    gen = FileProvider(folder, FileOptions(probe_endpoints=False, notify=False)).watch()
    await _next(gen)
    web = folder / "web.yaml"
    web.write_text(web.read_text().replace("priority: 1", "priority: 6"))
    second = await _next(gen)
    await gen.aclose()
    assert _priorities(second) == [0, 6]
