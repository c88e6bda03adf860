"""When the auth-key reconciler may skip a replica without reading its state Secret: only when
it is registered with nothing waiting. A re-issue request is the field's presence — containerboot
names the key its config held, and that is ``""`` once the used key left the file, which is the
usual case (found on the bed: an admin deleted the device, the pod restarted, and the empty
request was read as "nothing asked" — the proxy waited for a key forever)."""

from __future__ import annotations

from tsgw.controllers._authkeys import AUTHKEY_FIELD, _settled
from tsgw.tailscale import StateKeys


def test_a_registered_replica_with_nothing_waiting_is_settled() -> None:
    assert _settled({StateKeys.DEVICE_ID: "n1"})


def test_an_empty_reissue_request_is_a_request() -> None:
    assert not _settled({StateKeys.DEVICE_ID: "n1", StateKeys.REISSUE_AUTHKEY: ""})
    assert not _settled({StateKeys.DEVICE_ID: "n1", StateKeys.REISSUE_AUTHKEY: "tskey-auth-old"})


def test_a_key_still_in_the_config_or_no_device_is_not_settled() -> None:
    assert not _settled({StateKeys.DEVICE_ID: "n1", AUTHKEY_FIELD: "tskey-auth-new"})
    assert not _settled({})
