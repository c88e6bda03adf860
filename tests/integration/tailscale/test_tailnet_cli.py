"""`just tailnet up|down`: the box and the hosted-API fake, one state, from one command, and gone after."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.process import Process
from tests.support.tailnet_box import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_tailnet_up_serves_the_box_and_the_fake_and_down_removes_them(tmp_path: Path) -> None:
    state = tmp_path / "tailnet-box.json"
    env = {"TSGW_TAILNET_STATE": str(state), "PYTHONPATH": str(ROOT)}
    up = Process(
        "tailnet-up",
        [sys.executable, "-m", "tests.support.tailnet_box", "up"],
        tmp_path / "up.log",
        env=env,
        cwd=ROOT,
    )
    try:
        up.wait_ready(state.exists, timeout=60, what="writing its state file")
        info = json.loads(state.read_text())
        assert httpx.get(f"{info['admin_url']}/healthz").json()["ok"] is True
        # The hosted-API fake answers as Tailscale does: no credentials, 401.
        assert httpx.get(f"{info['api_url']}/api/v2/tailnet/-/devices").status_code == 401
        # ... and with the printed OAuth client, a key minted through it is the box's key.
        [secret] = re.findall(
            rf"OAuth client secret \(for {info['oauth_client_id']}\): (\S+)", up.log.read_text()
        )
        token = httpx.post(
            f"{info['api_url']}/api/v2/oauth/token",
            data={"client_id": info["oauth_client_id"], "client_secret": secret},
        ).json()["access_token"]
        minted = httpx.post(
            f"{info['api_url']}/api/v2/tailnet/-/keys",
            json={"capabilities": {"devices": {"create": {"tags": ["tag:proxy"]}}}},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        box_keys = httpx.get(f"{info['admin_url']}/api/keys").json()["keys"]
        assert [(k["id"], k["tags"]) for k in box_keys] == [(minted["id"], ["tag:proxy"])]
        assert Path(f"/run/netns/{info['namespace']}").exists()

        down = subprocess.run(
            [sys.executable, "-m", "tests.support.tailnet_box", "down"],
            env={**os.environ, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stderr
        wait_for(lambda: not up.alive(), timeout=30, what="up exiting")
        assert not state.exists()
        assert not Path(f"/run/netns/{info['namespace']}").exists()
    finally:
        up.stop()
