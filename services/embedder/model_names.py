"""Which models `engram reembed --model` can load, asked before anything heavy loads.

A model comes from one of three places (``model.resolve``): a packaged alias, a folder, or
a name already in the local Hugging Face cache (nothing is downloaded). A name in none of
them used to fail only after torch and the model libraries had loaded (10-40 s), with the
loader's message about an offline hub. ``check`` says it at once, in one line: what was
asked, what this machine has, and how to add a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.embedder.model import PACKAGED

# A bare name (all-MiniLM-L6-v2) is looked up as sentence-transformers does: also under
# its organisation.
ORGANISATION = "sentence-transformers"


class UnknownModel(LookupError):
    pass


def cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE", constants.HF_HUB_CACHE))


def cached() -> list[str]:
    """The models in the local Hugging Face cache (none when there is no cache)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = scan_cache_dir(cache_dir()).repos
    except (CacheNotFound, OSError):
        return []
    return sorted(repo.repo_id for repo in repos if repo.repo_type == "model")


def known() -> list[str]:
    """Every model name `--model` takes on this machine (folders aside)."""
    return [*PACKAGED, *cached()]


def check(source: str) -> None:
    """``UnknownModel`` (its message one line) unless ``source`` names a model here."""
    if source in PACKAGED or Path(source).expanduser().is_dir():
        return
    in_cache = cached()
    if source in in_cache or f"{ORGANISATION}/{source}" in in_cache:
        return
    raise UnknownModel(
        f"no model {source!r} here: --model takes {', '.join(known())} (packaged or in the "
        f"Hugging Face cache {cache_dir()}) or a sentence-transformers folder; to add one, "
        "download it once where there is network (`huggingface-cli download NAME`, into "
        "that cache) or copy its folder here"
    )
