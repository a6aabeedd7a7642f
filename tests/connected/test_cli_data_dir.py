"""Tools find the servers of an `engram dev --data-dir D` stack without being told D:
`engram dev` names its folder in a pointer file of the user data dir (issue 11, section 8).
A temporary HOME and XDG_DATA_HOME keep the test away from the real user folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.connected.dev_process import (
    run_engram,
    servers_under,
    start_engram,
    stop,
    wait_for_output,
)

pytestmark = pytest.mark.connected


@pytest.mark.slow
def test_status_finds_the_servers_of_a_dev_stack_in_another_folder(tmp_path: Path) -> None:
    home, data, log = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "dev.log"
    user = {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}
    pointer = home / ".local" / "share" / "engram" / "current"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "DATABASE_URL", "ENGRAM_DATA_DIR")
    }
    proc = start_engram(
        "dev", "--data-dir", str(data), "-s", "ingest", log=log, env={**user, "ENGRAM_DATA_DIR": ""}
    )
    try:
        wait_for_output(proc, log, "started ingest")
        out = run_engram("status", env={**clean, **user})
        assert out.returncode == 0, out.stderr
        assert "ingest.messages" in out.stdout
        assert pointer.read_text().strip() == str(data.resolve())
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
    assert servers_under(data) == []
    assert not pointer.exists()  # gone with its stack
    after = run_engram("status", env={**clean, **user})
    assert after.returncode == 2 and "start `engram dev`" in after.stderr
