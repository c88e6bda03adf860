"""The operator's tailnet and auth-key controllers against a real kube-apiserver and a real
Headscale (the tailnet fixture): credentials checked into the tailnet's Ready condition (and a
wrong key into AuthFailed, without stopping anything else); the tailnet's devices published in a
ConfigMap every replica reads; one key minted per replica into its state Secret and from there
into its tailscaled config file, none minted again by a restarted operator; the key leaves the
config once the device registered; and a replica scaled away has its device deleted from
Headscale before its state Secret goes."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from tests.integration.operator.test_operator_on_apiserver import (
    KINDS,
    STATEFULSETS,
    _assert_keyed_before,
    _condition,
    _get,
    _install_crds,
    _namespace,
    eventually,
    watch_keys,
)
from tests.support.controlplane import ControlPlane
from tests.support.tailnet import Tailnet
from tsgw.api import API_VERSION
from tsgw.controllers import AUTHKEY_FIELD, AUTHKEYS_READY, FACTS_KEY, facts_configmap_name
from tsgw.kube import CONFIGMAPS, EVENTS, SECRETS, Client
from tsgw.operator import Operator, OperatorOptions
from tsgw.tailscale import APIKey, ClientOptions, HeadscaleClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TAG = "tag:k8s"


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as c:
        await _install_crds(c)
        yield c


def _tailnet(name: str, url: str, secret_ns: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleTailnet",
        "metadata": {"name": name},
        "spec": {
            "controlPlane": {"type": "Headscale", "apiURL": url},
            "credentials": {
                "secretRef": {"namespace": secret_ns, "name": secret},
                "apiKey": {"key": "api_key"},
            },
            "tags": [TAG],
        },
    }


async def _secret(client: Client, ns: str, name: str, value: str) -> None:
    await client.apply(
        SECRETS,
        {"metadata": {"name": name, "namespace": ns}, "stringData": {"api_key": value}},
        field_manager="test",
    )


def _data(secret: dict[str, Any] | None, key: str) -> str | None:
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value).decode() if value is not None else None


def _operator(client: Client, ns: str) -> Operator:
    return Operator(
        client,
        OperatorOptions(
            namespace=ns,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            health_probe_address="127.0.0.1:0",
            metrics_address=None,
            leader_election=False,
            tailnet_poll_interval=1.0,
        ),
    )


def _metric(name: str, **labels: str) -> float:
    """The sum of ``name``'s samples in this process's registry whose labels include ``labels``."""
    return sum(
        s.value
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_tailnet_facts_keys_and_device_cleanup(client: Client, tailnet: Tailnet) -> None:
    ops = await _namespace(client, "tsgw-system")
    apps = await _namespace(client, "apps")
    good, bad = f"hs-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    await _secret(client, ops, "headscale", tailnet.api_key())
    await _secret(client, ops, "wrong", "not-a-key")
    await client.create(KINDS["TailscaleTailnet"], _tailnet(good, tailnet.api_url, ops, "headscale"))
    await client.create(KINDS["TailscaleTailnet"], _tailnet(bad, tailnet.api_url, ops, "wrong"))
    # A device already on the tailnet, to be found in the facts.
    async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
        from tsgw.tailscale import AuthKeyRequest

        key = await hs.create_auth_key(AuthKeyRequest(tags=(TAG,), expiry_seconds=3600))
        await anyio.to_thread.run_sync(tailnet.join, f"facts-{good}", key.key)
        keys_before_operator = len(await hs.list_auth_keys())

    endpoints = {
        "apiVersion": API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": "db", "namespace": apps},
        "spec": {
            "tailnetRef": {"name": good},
            "targets": [{"name": "db", "address": f"facts-{good}", "ports": [{"port": 5432}]}],
            "proxy": {"replicas": 2},
        },
    }
    await client.create(KINDS["TailscaleEndpoints"], endpoints)
    operator = _operator(client, ops)
    first_key: dict[str, int] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: watch_keys(client, apps, first_key, task_status=task_status))
        await tg.start(operator.run)
        # Several owners' keys and devices are worked on at once (one owner's device clean-up
        # must not hold another's first key); one owner never twice at once (the queue's rule).
        assert {c.options.max_concurrent_reconciles for c in operator.authkeys.values()} == {4}

        async def ready(name: str, want: str) -> bool:
            c = _condition(await client.get(KINDS["TailscaleTailnet"], name), "Ready")
            return c is not None and c["reason"] == want

        await eventually(lambda: ready(good, "Ready"), "the good tailnet Ready")
        await eventually(lambda: ready(bad, "AuthFailed"), "the bad tailnet AuthFailed")

        # Facts: the ConfigMap every replica reads names the device; the target resolves by name.
        async def facts() -> dict[str, Any] | None:
            cm = await _get(client, CONFIGMAPS, facts_configmap_name(good), ops)
            return json.loads(cm["data"][FACTS_KEY]) if cm is not None else None

        doc = await eventually(facts, "facts published")
        assert any(d[0].startswith(f"facts-{good}") for d in doc["devices"])

        async def resolved() -> bool:
            c = _condition(await client.get(KINDS["TailscaleEndpoints"], "db", apps), "ResolvedRefs")
            return c is not None and c["status"] == "True"

        await eventually(resolved, "the target resolved from the facts")

        # One key per replica, in its state Secret and in its config file.
        async def keys() -> dict[str, str] | None:
            out = {}
            for pod in ("db-tsep-0", "db-tsep-1"):
                key = _data(await _get(client, SECRETS, pod, apps), AUTHKEY_FIELD)
                if key is None:
                    return None
                out[pod] = key
            return out

        minted = await eventually(keys, "a key per replica")
        assert len(set(minted.values())) == 2
        # Exactly one key per replica was minted: a reconcile that ran before the cache showed
        # the previous key must not mint another (the second key would leak).
        async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
            assert len(await hs.list_auth_keys()) == keys_before_operator + 2
        # The series the tailnet alerts read, labelled with the TailscaleTailnet's name.
        assert _metric("tsgw_tailscale_auth_keys_minted_total", tailnet=good, reason="new") == 2
        assert _metric("tsgw_tailscale_api_requests_total", tailnet=good, backend="headscale", code="200") > 0
        refused = [_metric("tsgw_tailscale_api_requests_total", tailnet=bad, code=c) for c in ("401", "403")]
        assert sum(refused) > 0
        assert _metric("tsgw_tailscale_api_requests_total", tailnet=bad, code="200") == 0

        async def in_config(pod: str, key: str | None) -> bool:
            cfg = await _get(client, SECRETS, f"{pod}-config", apps)
            text = json.dumps({k: _data(cfg, k) for k in (cfg or {}).get("data", {})})
            return (key in text) if key is not None else ("hskey-auth" not in text)

        for pod, key in minted.items():
            await eventually(lambda p=pod, k=key: in_config(p, k), f"{pod}'s key in its config file")
        # The proxies' StatefulSet came only after both keys were in the config Secrets, so each
        # pod's first mount of its config already holds its key.
        sts = await eventually(lambda: _get(client, STATEFULSETS, "db-tsep", apps), "the StatefulSet")
        await _assert_keyed_before(sts, first_key)
        async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
            before = len(await hs.list_auth_keys())
        operator.manager.stop()
        tg.cancel_scope.cancel()

    # A restarted operator finds the keys and mints none.
    operator = _operator(client, ops)
    async with anyio.create_task_group() as tg:
        await tg.start(operator.run)
        await eventually(lambda: ready(good, "Ready"), "Ready again")
        await anyio.sleep(2.0)  # (a window for a spurious mint, not a wait for an event)
        async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
            assert len(await hs.list_auth_keys()) == before
        assert await keys() == minted

        key1_id = _data(await _get(client, SECRETS, "db-tsep-1", apps), "tsgw-authkey-id")
        key0 = _data(await _get(client, SECRETS, "db-tsep-0", apps), "tsgw-authkey-id")
        assert key1_id
        assert key0

        # Replica 0 registers (containerboot writes device_id): its key leaves the config file.
        async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
            node = await anyio.to_thread.run_sync(tailnet.join, f"db-tsep-0-{good}", minted["db-tsep-0"])
            device_id = str(node.status()["Self"]["ID"])
            await client.patch(
                SECRETS,
                "db-tsep-0",
                {"data": {"device_id": base64.b64encode(device_id.encode()).decode()}},
                namespace=apps,
            )
            await eventually(
                lambda: in_config("db-tsep-0", None), "the used key left replica 0's config file"
            )
            assert _data(await _get(client, SECRETS, "db-tsep-0", apps), AUTHKEY_FIELD) is None

            # Scale to one replica: replica 1's state Secret is pruned, its (unused) key revoked.
            obj = copy.deepcopy(dict(await client.get(KINDS["TailscaleEndpoints"], "db", apps)))
            obj["spec"]["proxy"]["replicas"] = 1
            await client.replace(KINDS["TailscaleEndpoints"], obj)
            await eventually(
                lambda: _gone(client, apps, "db-tsep-1"), "replica 1's state Secret cleaned up and gone"
            )
            # Revoked: deleted (Headscale 0.29 deletes pre-auth keys) or at least no longer valid.
            left = [k for k in await hs.list_auth_keys() if k.id == key1_id]
            assert all(k.invalid for k in left), "replica 1's unused key was not revoked"
            assert any(k.id == key0 for k in await hs.list_auth_keys())  # replica 0's is kept
            assert any(d.id == device_id for d in await hs.list_devices())
            # The owner is deleted, and its state Secrets with it (deleted here as the garbage
            # collector would; this control plane runs none): the device goes first.
            await client.delete(KINDS["TailscaleEndpoints"], "db", apps)
            await client.delete(SECRETS, "db-tsep-0", apps)
            await eventually(lambda: _gone(client, apps, "db-tsep-0"), "replica 0's state Secret gone")
            assert not any(d.id == device_id for d in await hs.list_devices())
        operator.manager.stop()
        tg.cancel_scope.cancel()


async def _gone(client: Client, ns: str, name: str) -> bool:
    return await _get(client, SECRETS, name, ns) is None


async def test_facts_the_api_server_refuses_become_a_reason_not_a_retry_loop(client: Client) -> None:
    """More devices than a ConfigMap holds (1 MiB): the real API server refuses the facts, and the
    tailnet controller turns that into FactsNotPublished on the tailnet (the last published
    facts stay in use) instead of failing the reconcile over and over."""
    from tsgw.controllers import TailnetReconciler
    from tsgw.controllers._tailnets import _FactsRefused
    from tsgw.kube import Manager, ManagerOptions
    from tsgw.translate import Device, TailnetFacts

    ops = await _namespace(client, "tsgw-system")
    rec = TailnetReconciler(Manager(client, ManagerOptions()), KINDS["TailscaleTailnet"], None, namespace=ops)  # type: ignore[arg-type]
    devices = tuple(
        Device(
            f"device-{i:05d}.tail1234.ts.net", (f"100.64.{i // 250}.{i % 250}",), ("tag:a", "tag:b"), "u@x"
        )
        for i in range(20_000)
    )
    with pytest.raises(_FactsRefused, match="refused"):
        await rec._publish("big", TailnetFacts("tail1234.ts.net", devices))
    assert await _get(client, CONFIGMAPS, facts_configmap_name("big"), ops) is None
    await rec._publish("small", TailnetFacts("tail1234.ts.net", devices[:10]))  # a normal one is written
    assert await _get(client, CONFIGMAPS, facts_configmap_name("small"), ops) is not None


async def test_a_group_whose_tailnet_cannot_mint_keys_says_so_until_it_can(
    client: Client, tailnet: Tailnet
) -> None:
    """Credentials that never worked hold a new group's StatefulSet (no key, no pod): the owner's
    AuthKeysReady condition and a Warning Event name the tailnet and its own reason; fixed
    credentials mint the keys, clear the condition and let the StatefulSet come."""
    ops = await _namespace(client, "tsgw-system")
    apps = await _namespace(client, "apps")
    name = f"late-{uuid.uuid4().hex[:6]}"
    await _secret(client, ops, "creds", "not-a-key")
    await client.create(KINDS["TailscaleTailnet"], _tailnet(name, tailnet.api_url, ops, "creds"))
    await client.create(
        KINDS["TailscaleEndpoints"],
        {
            "apiVersion": API_VERSION,
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "db", "namespace": apps},
            "spec": {
                "tailnetRef": {"name": name},
                "targets": [{"name": "db", "address": "100.64.0.9", "ports": [{"port": 5432}]}],
            },
        },
    )

    async def keys_ready(status: str) -> dict[str, Any] | None:
        c = _condition(await client.get(KINDS["TailscaleEndpoints"], "db", apps), AUTHKEYS_READY)
        return c if c is not None and c["status"] == status else None

    operator = _operator(client, ops)
    async with anyio.create_task_group() as tg:
        await tg.start(operator.run)
        held = await eventually(lambda: keys_ready("False"), "AuthKeysReady=False on the owner")
        assert held["reason"] == "TailnetNotReady"
        assert f"tailnet {name!r} is not Ready (AuthFailed" in held["message"]

        async def warned() -> bool:
            events = (await client.list(EVENTS, namespace=apps)).items
            return any(e.get("reason") == "TailnetNotReady" and e.get("type") == "Warning" for e in events)

        await eventually(warned, "a Warning Event on the owner")
        assert await _get(client, STATEFULSETS, "db-tsep", apps) is None

        await _secret(client, ops, "creds", tailnet.api_key())
        cleared = await eventually(lambda: keys_ready("True"), "AuthKeysReady=True once keys are minted")
        assert cleared["reason"] == "Minted"
        await eventually(lambda: _get(client, STATEFULSETS, "db-tsep", apps), "the StatefulSet")
        operator.manager.stop()
        tg.cancel_scope.cancel()
