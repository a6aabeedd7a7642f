"""Every AsyncAPI document `engram docs export` writes passes the official AsyncAPI parser
(npm `@asyncapi/cli`, `asyncapi validate`), and `engram docs serve` serves the same
documents (issue 14, item 6).

`.ci/run` installs the parser into `.ci/node` and sets ENGRAM_REQUIRE_ASYNCAPI=1, so in CI
a missing parser fails these tests; on a machine without it they are skipped, saying how
to install it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARSER = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "asyncapi"
INSTALL = "npm install --prefix .ci/node @asyncapi/cli@6.2.0 (as .ci/run does)"
ENGRAM = str(Path(sys.executable).parent / "engram")
NAMES = ["engram", "ingest", "embedder", "memory", "checkpointer", "audit"]


def engram_env() -> dict[str, str]:
    """This checkout's code, whatever the installed `engram` script points at."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("asyncapi")
    done = subprocess.run(
        [ENGRAM, "docs", "export", str(folder)],
        env=engram_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if not PARSER.exists():
        if os.environ.get("ENGRAM_REQUIRE_ASYNCAPI") == "1":
            pytest.fail(f"the AsyncAPI parser is missing at {PARSER}: {INSTALL}")
        pytest.skip(f"the official AsyncAPI parser is not installed: {INSTALL}")
    # Analytics off without touching the user's home: the CLI reads its settings from
    # ASYNCAPI_METRICS_CONFIG_PATH, and sends nothing when CI=true.
    settings = tmp_path_factory.mktemp("asyncapi-cli") / "analytics.json"
    settings.write_text(
        json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "ci"})
    )
    env = {
        **os.environ,
        "ASYNCAPI_METRICS_CONFIG_PATH": str(settings),
        "CI": "true",
        "SUPPRESS_NO_CONFIG_WARNING": "1",
    }
    return PARSER, env


def validate(parser: tuple[Path, dict[str, str]], path: Path) -> subprocess.CompletedProcess[str]:
    binary, env = parser
    return subprocess.run(
        [str(binary), "validate", "--fail-severity", "warn", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", NAMES)
def test_each_document_passes_the_official_parser(
    parser: tuple[Path, dict[str, str]], exported: Path, name: str
) -> None:
    path = exported / f"{name}.asyncapi.json"
    done = validate(parser, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout, done.stdout


def test_the_parser_refuses_what_it_should(
    parser: tuple[Path, dict[str, str]], exported: Path, tmp_path: Path
) -> None:
    """The check can fail: OpenAPI's discriminator object (what pydantic writes) and a
    reply naming a message that does not exist are errors."""
    document = json.loads((exported / "embedder.asyncapi.json").read_text())
    schemas = document["components"]["schemas"]
    schemas["EmbedAnswer"]["discriminator"] = {"propertyName": "status"}
    document["operations"]["query.embed"]["reply"] = {
        "messages": [{"$ref": "#/channels/query.embed/messages/Nothing"}]
    }
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    done = validate(parser, broken)
    assert done.returncode != 0
    assert "discriminator" in done.stdout + done.stderr


def test_serve_answers_every_exported_document(exported: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [ENGRAM, "docs", "serve", "--port", "0"],
            env=engram_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _wait_for_url(server, log)
        index = urllib.request.urlopen(url, timeout=10).read().decode()
        for name in NAMES:
            assert f"/{name}.asyncapi.json" in index
            served = json.loads(urllib.request.urlopen(f"{url}{name}.asyncapi.json").read())
            assert served == json.loads((exported / f"{name}.asyncapi.json").read_text())
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}nope.json", timeout=10)
        assert missing.value.code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_export_into_a_file_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [ENGRAM, "docs", "export", str(blocker / "docs")],
        env=engram_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 2
    said = (done.stdout + done.stderr).strip()
    assert said.startswith("error: cannot write into"), said
    assert len(said.splitlines()) == 1


def _wait_for_url(server: subprocess.Popen[bytes], log: Path) -> str:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"http://[\d.]+:\d+/", log.read_text())
        if found:
            return found.group(0)
        assert server.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"engram docs serve printed no address: {log.read_text()}")
