"""The Event recorder's correlation map is bounded, as client-go's 4,096-entry LRU."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client as k8s_client

from tsgw.kube import Client, EventRecorder, EventRecorderOptions, FakeClock

pytestmark = pytest.mark.anyio


def cm(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "a", "uid": name},
    }


async def test_the_correlation_map_keeps_at_most_4096_entries_least_recently_used_first() -> None:
    cfg = k8s_client.Configuration(host="https://127.0.0.1:1")
    async with Client(k8s_client.ApiClient(configuration=cfg)) as client:  # never contacted
        rec = EventRecorder(client, clock=FakeClock())
        assert rec.options.max_entries == 4096
        rec.event(cm("hot"), "Warning", "Down", "x")
        for i in range(5000):
            rec.event(cm(f"o{i}"), "Normal", "Synced", "ok")
            if i % 1000 == 0:
                rec.event(cm("hot"), "Warning", "Down", "x")  # recently used: kept
        assert len(rec._entries) == 4096
        hot = [e for e in rec._entries.values() if e.regarding["name"] == "hot"]
        assert len(hot) == 1
        assert hot[0].count == 6
        assert not any(e.regarding["name"] == "o0" for e in rec._entries.values())
        # Events not yet written are still written, even once evicted from the map.
        assert len(rec._pending) == 5001

        small = EventRecorder(client, EventRecorderOptions(max_entries=2), clock=FakeClock())
        for i in range(3):
            small.event(cm(f"s{i}"), "Normal", "Synced", "ok")
        assert [e.regarding["name"] for e in small._entries.values()] == ["s1", "s2"]
