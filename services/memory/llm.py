"""The optional summarizer: any OpenAI-compatible ``/chat/completions`` endpoint.

Never required. Consolidation uses it for summarize / abstract only when
``MEMORY_LLM_URL`` is set, and falls back to the extractive summary when the endpoint
fails or times out, so a job never waits on, or fails because of, a model server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger("engram.memory.llm")
TIMEOUT_S = 30.0
PROMPT = (
    "Summarize these memories of an AI agent into one or two factual sentences. "
    "Keep names, places, dates and numbers. Answer with the summary only."
)


def _post(url: str, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    # Any: a JSON request and reply of an endpoint this service does not define.
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(
        url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


async def summarize(url: str, model: str, api_key: str | None, texts: list[str]) -> str | None:
    """The endpoint's summary of ``texts``, or None when it cannot give one."""
    body = {
        "model": model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": "\n".join(f"- {t}" for t in texts)},
        ],
    }
    try:
        reply = await asyncio.to_thread(_post, url, body, api_key)
        text = str(reply["choices"][0]["message"]["content"]).strip()
    except Exception as exc:  # any failure: the extractive summary stands
        log.warning("LLM summarizer at %s failed (%s); using the extractive summary", url, exc)
        return None
    return text or None
