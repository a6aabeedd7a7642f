"""The code a bench measures: by default a snapshot of services/, client/contracts/ and
sql/ taken at start (``reexec_on_snapshot``), and what a report says of it (git state,
tree hash).

A bench run as a script (``python bench/x.py``) puts the repository root on ``sys.path``
itself before importing the harness; nothing in it imports ``services`` at import time, so
a snapshot on PYTHONPATH is what the bench measures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
# The code measured: by default a snapshot of these folders taken at start (see
# reexec_on_snapshot), so edits landing in the working tree during a run do not mix versions.
# (client/contracts is copied to the snapshot's top level, where it imports as `contracts`.)
CODE_DIRS = ("services", "client/contracts", "sql")
SNAPSHOT_ENV = "ENGRAM_BENCH_CODE"
SNAPSHOT_PREFIX = "engram-bench-code-"


def git_state() -> dict[str, Any]:
    """The commit, and whether services/, client/contracts/ or sql/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", *CODE_DIRS)
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(dirty)}


def code_dir(root: Path, folder: str) -> Path:
    """``folder`` of CODE_DIRS under ``root``: in the checkout, or at the top of a snapshot."""
    here = root / folder
    return here if here.is_dir() else root / Path(folder).name


def tree_hash(root: Path) -> str:
    """The same for a checkout and its snapshot (paths are hashed as in the snapshot)."""
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        top = code_dir(root, folder)
        for path in sorted(top.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                digest.update(str(Path(top.name) / path.relative_to(top)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version(tree: Path) -> dict[str, Any]:
    """The git state (taken before the snapshot when there is one) and the hash of
    ``tree``'s services/, client/contracts/ and sql/."""
    if os.environ.get(SNAPSHOT_ENV):
        info = json.loads(os.environ.get(f"{SNAPSHOT_ENV}_GIT", "{}"))
        return {**info, "snapshot": True, "tree_sha": tree_hash(tree)}
    return {**git_state(), "snapshot": False, "tree_sha": tree_hash(tree)}


def reexec_on_snapshot(script: str, argv: list[str]) -> None:
    """Copy services/, client/contracts/ and sql/ aside and run ``script`` (the bench) and its
    workers on the copy, through PYTHONPATH, so edits landing during a run do not mix
    versions. Does not return."""
    info = git_state()
    snapshot = Path(tempfile.mkdtemp(prefix=SNAPSHOT_PREFIX))
    snapshot.chmod(0o755)
    for folder in CODE_DIRS:
        shutil.copytree(
            ROOT / folder,
            snapshot / Path(folder).name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    pythonpath = os.pathsep.join(p for p in (str(snapshot), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        SNAPSHOT_ENV: str(snapshot),
        f"{SNAPSHOT_ENV}_GIT": json.dumps(info),
        "PYTHONPATH": pythonpath,
    }
    os.execve(sys.executable, [sys.executable, str(Path(script).resolve()), *argv], env)


def imported_code(console: Console) -> Path | None:
    """Where ``services`` was imported from; None (after saying so) when the bench runs on
    a snapshot but imported the code from elsewhere."""
    import services

    snapshot = os.environ.get(SNAPSHOT_ENV)
    where = Path(services.__file__).resolve().parents[1]
    if snapshot and where != Path(snapshot).resolve():
        console.print(f"[red]services imported from {where}, not from the snapshot {snapshot}")
        return None
    return where
