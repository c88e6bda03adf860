"""Caller identity on the bed, with the tailnet in a box (real tailscaled, real control protocol,
the hosted-API fake for the API, where each untagged device's owner and each user's display
name are set as Tailscale's API reports them):

- an HTTP port of ``svc:who``: the backend (the bed's, echoing its request headers) sees user
  A's login and display name on a call from A's device, a tagged device's tags (and no user),
  and never the ``Tailscale-*`` headers a client forged;
- a TailscaleRoutePolicy allows user A and denies user B on the HTTP port (B's connection is
  closed: the access policy is a network RBAC filter on the tailnet address);
- a TCP port with ``proxyProtocol``: the backend reads a PROXY v2 header naming A's tailnet
  address.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import Bed
from tests.e2e.bed.helpers import box_in_bed, operator_on_box, pods, ready, wait
from tests.support.boxed_fake import OPERATOR_TAG, BoxedTailnet
from tests.support.tailnet import Node
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import NotFoundError, TailscaleService

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
APPS = "default"
SVC = "svc:who"
BOX_TAGS = ("tag:proxy", "tag:k8s", "tag:client")
INGRESS = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=who-tssvc"
ALICE, BOB = "alice@tailnet.test", "bob@tailnet.test"

FORGED = (
    b"Tailscale-User-Login: mallory@tailnet.test\r\n"
    b"tailscale_user_login: mallory@tailnet.test\r\n"
    b"TAILSCALE-NODE-TAGS: tag:admin\r\n"
)


@pytest.fixture(scope="module")
def box(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxedTailnet]:
    with box_in_bed(bed, tmp_path_factory.mktemp("box"), BOX_TAGS) as tn:
        # Who owns which device, and the users' display names, as the API reports them.
        tn.fake.owners.update({"alice-dev": ALICE, "bob-dev": BOB})
        tn.fake.users.update(
            {
                ALICE: {"id": "u-alice", "displayName": "Alice Liddell"},
                BOB: {"id": "u-bob", "displayName": "Bob"},
            }
        )
        yield tn


@pytest.fixture(scope="module")
def installed(bed: Bed, box: BoxedTailnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # tsgw's credential with the two optional read scopes (docs/tailscale.md): users' display
    # names and the policy file.
    credentials = box.fake.add_oauth_client(
        scopes=("auth_keys", "devices:core", "services", "users:read", "policy_file:read"),
        tags=(OPERATOR_TAG,),
    )
    with operator_on_box(
        bed,
        box,
        tmp_path_factory.mktemp("identity-install"),
        services=(SVC,),
        kinds=("tailscaleroutepolicies", "tailscaleservices"),
        credentials=credentials,
    ) as overlay:
        yield overlay


@pytest.fixture(scope="module")
def who(bed: Bed, box: BoxedTailnet, installed: Path) -> str:
    """The backend and svc:who (HTTP 80, TCP 5432 with PROXY v2) on one ingress proxy; returns
    the service's IPv4 VIP once the proxy serves it."""
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: who, namespace: {APPS}}}
            spec:
              replicas: 1
              selector: {{matchLabels: {{app: who}}}}
              template:
                metadata: {{labels: {{app: who}}}}
                spec:
                  containers: [{{name: who, image: bed.test/backend}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: who, namespace: {APPS}}}
            spec:
              selector: {{app: who}}
              ports:
                - {{name: http, port: 80, targetPort: 8080}}
                - {{name: pg, port: 5432, targetPort: 9001}}
            ---
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleServices
            metadata: {{name: who, namespace: {APPS}}}
            spec:
              tailnetRef: {{name: tailscale}}
              proxy: {{replicas: 1}}
              ports:
                - {{port: 80, protocol: HTTP, targetPort: http}}
                - {{port: 5432, targetPort: pg, proxyProtocol: true}}
              backends: [{{service: who}}]
              tags: [tag:k8s]
            """
        )
    )
    svc: TailscaleService = wait(
        lambda: _service(box, SVC), timeout=60, what=f"{SVC} created through the API"
    )
    wait(
        lambda: len([p for p in pods(bed, INGRESS, APPS) if ready(p)]) == 1,
        timeout=240,
        what="the ingress proxy Ready",
        interval=1,
    )

    def serving() -> bool:
        return any(h.get("approved") and h.get("serviceHost") for h in box.box.admin.service_hosts(SVC))

    wait(serving, timeout=120, what=f"the proxy an approved host of {SVC}", interval=1)
    return next(a for a in svc.addrs if "." in a)


@pytest.fixture(scope="module")
def clients(box: BoxedTailnet) -> dict[str, Node]:
    """Alice's and Bob's own (untagged) devices and a tagged one."""
    return {
        "alice": box.box.join("alice-dev", auth_key(box, ()), socks5=True),
        "bob": box.box.join("bob-dev", auth_key(box, ()), socks5=True),
        "ci": box.box.join("ci-dev", auth_key(box, ("tag:client",)), socks5=True),
    }


def _service(box: BoxedTailnet, name: str) -> TailscaleService | None:
    try:
        return box.call(box.ts.get_service, name)
    except NotFoundError:
        return None


def _identity(client: Node, vip: str) -> tuple[str, dict[str, str]]:
    """(status line, the Tailscale-* headers the backend received, names lower-cased) of one
    GET /headers carrying forged Tailscale-* headers; ("dial failed: ...", {}) when the tailnet
    did not carry the connection."""
    request = b"GET /headers HTTP/1.1\r\nHost: who\r\nConnection: close\r\n" + FORGED + b"\r\n"
    try:
        reply = client.dial(vip, 80, request, timeout=5)
    except OSError as e:
        return f"dial failed: {e!r}", {}
    head, _, body = reply.partition(b"\r\n\r\n")
    seen: dict[str, str] = {}
    for line in body.decode(errors="replace").splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.lower().startswith(("tailscale-", "tailscale_")):
            seen[name.lower()] = value.strip()
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), seen


def test_the_backend_sees_who_calls_and_never_a_forged_header(
    bed: Bed, who: str, clients: dict[str, Node]
) -> None:
    alice = {
        "tailscale-user-login": ALICE,
        "tailscale-user-name": "Alice Liddell",
    }
    last: dict[str, tuple[str, dict[str, str]]] = {}

    def alice_named() -> bool:
        last["alice"] = r = _identity(clients["alice"], who)
        # The facts (polled every 2 s) bring the new device; until then it gets no identity.
        return " 200 " in f"{r[0]} " and all(r[1].get(k) == v for k, v in alice.items())

    try:
        wait(alice_named, timeout=120, what="alice's login and display name at the backend", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last: {last}") from None
    _, seen = last["alice"]
    assert seen["tailscale-node-name"].startswith("alice-dev."), seen
    assert set(seen) == {"tailscale-user-login", "tailscale-user-name", "tailscale-node-name"}, seen

    def ci_named() -> bool:
        last["ci"] = r = _identity(clients["ci"], who)
        return r[1].get("tailscale-node-tags") == "tag:client"

    try:
        wait(ci_named, timeout=60, what="the tagged device's tags at the backend", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last: {last}") from None
    _, seen = last["ci"]
    assert set(seen) == {"tailscale-node-name", "tailscale-node-tags"}, seen
    assert seen["tailscale-node-name"].startswith("ci-dev."), seen


def test_a_policy_allows_user_a_and_denies_user_b(bed: Bed, who: str, clients: dict[str, Node]) -> None:
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleRoutePolicy
            metadata: {{name: alice-only, namespace: {APPS}}}
            spec:
              targetRefs: [{{kind: TailscaleServices, name: who, sectionName: http-80}}]
              access:
                defaultAction: Deny
                rules:
                  - {{action: Allow, users: ["{ALICE}"]}}
            """
        )
    )
    try:
        seen: dict[str, str] = {}

        def decided() -> bool:
            seen["alice"] = _identity(clients["alice"], who)[0]
            seen["bob"] = _identity(clients["bob"], who)[0]
            return " 200 " in f"{seen['alice']} " and seen["bob"] == ""

        try:
            wait(decided, timeout=90, what="alice answered 200 and bob refused", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; last answers {seen}") from None
        # The tagged device's API record has no user: a users rule never matches it.
        status = _identity(clients["ci"], who)[0]
        assert status == "" or status.startswith("dial failed"), (
            f"a tagged device passed a users rule: {status}"
        )
    finally:
        bed.kubectl("delete", "tailscaleroutepolicy", "-n", APPS, "alice-only", check=False)


def test_a_tcp_port_hands_the_callers_address_to_the_backend_in_proxy_v2(
    bed: Bed, who: str, clients: dict[str, Node]
) -> None:
    alice = clients["alice"]
    answers: list[str] = []

    def answered() -> str | None:
        try:
            line = alice.dial(who, 5432, b"", timeout=5).decode(errors="replace").strip()
        except OSError as e:
            answers.append(repr(e))
            return None
        answers.append(line)
        return line or None

    line = wait(answered, timeout=60, what="the PROXY port answered through svc:who", interval=1)
    name, src, _port = line.split(" ")
    assert name.startswith("who-"), answers
    assert src == alice.ip4(), (line, alice.ip4())
