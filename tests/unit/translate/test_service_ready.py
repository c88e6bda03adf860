"""The TailscaleServiceReady condition: from the facts' VIPs and claims, for each case a user
can meet; and the claims survive the facts' JSON round trip (every replica reads that JSON)."""

from __future__ import annotations

from tsgw.translate import TailnetFacts
from tsgw.translate._context import _service_ready

ME = "TailscaleServices/apps/web"


def test_a_claimed_service_with_vips_is_ready() -> None:
    facts = TailnetFacts(services={"svc:web": ("100.100.0.1",)}, claims={"svc:web": (ME,)})
    c = _service_ready(facts, "svc:web", ME)
    assert (c.status, c.reason) == (True, "Created")
    assert "100.100.0.1" in c.message


def test_a_service_someone_else_made_is_not_ready_and_says_so() -> None:
    facts = TailnetFacts(services={"svc:web": ("100.100.0.1",)})
    c = _service_ready(facts, "svc:web", ME)
    assert (c.status, c.reason) == (False, "NotClaimed")
    other = TailnetFacts(
        services={"svc:web": ("100.100.0.1",)}, claims={"svc:web": ("TailscaleServices/b/web",)}
    )
    assert _service_ready(other, "svc:web", ME).reason == "NotClaimed"


def test_a_missing_service_is_not_created_yet() -> None:
    c = _service_ready(TailnetFacts(), "svc:web", ME)
    assert (c.status, c.reason) == (False, "NotCreated")


def test_claims_round_trip_through_the_facts_json() -> None:
    facts = TailnetFacts("ts.net", (), {"svc:web": ("100.100.0.1",)}, {"svc:web": (ME,)})
    assert TailnetFacts.from_json(facts.to_json()) == facts
    assert "claims" not in TailnetFacts().to_json()  # documents without claims stay as they were
