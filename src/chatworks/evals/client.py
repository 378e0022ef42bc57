"""Asking a running chatworks server for a suite run: `POST /v1/ask` over HTTP, and uploading a
suite's corpus through the documents API.

The server answers from its own collection with its own settings and model, so a run against
`--url` measures that deployment; the corpus must already be in the collection (or be uploaded
with `upload_corpus`). Not covered: what the retrieval metrics need (the ranked hits are not in
the response), so a remote run reports answers, citations, refusals, latency and tokens only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from chatworks.evals.ask import Asked, Cited

RETRIES = 3  # for 429 and 503, which a busy server answers with Retry-After
MAX_WAIT_S = 10.0


class ServerError(RuntimeError):
    """The server cannot run the suite (unreachable, no such collection, an upload refused)."""


def api_base(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean the same server."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def request_headers(api_key: str | None, use_cache: bool = False) -> dict[str, str]:
    """Bearer auth when a key is given; `Cache-Control: no-cache` unless `use_cache`, so a
    measurement sees answering, not the server's response cache (docs/security/)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return headers if use_cache else {"Cache-Control": "no-cache", **headers}


class RemoteAsker:
    def __init__(
        self, url: str, collection: str, max_tokens: int, api_key: str | None = None,
        timeout_s: float = 300.0,
    ):  # fmt: skip
        self.base, self.collection, self.max_tokens = api_base(url), collection, max_tokens
        self.headers, self.timeout_s = request_headers(api_key), timeout_s
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # Made here, inside the run's event loop, and closed by `close` in the same loop.
        self.client = httpx.AsyncClient(headers=self.headers, timeout=self.timeout_s)
        try:
            await self._check_collection()
        except ServerError:
            await self.close()  # the run ends before it would close the client
            raise

    async def _check_collection(self) -> None:
        url = f"{self.base}/collections/{self.collection}/documents"
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as e:
            raise ServerError(f"{self.base}: {e!r}") from None
        if response.status_code == 404:
            raise ServerError(f"{self.base}: no collection {self.collection!r} (use --ingest)")
        if response.status_code != 200:
            raise ServerError(f"GET {url}: HTTP {response.status_code} {response.text[:200]}")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def ask(self, question: str) -> Asked:
        body = {"question": question, "collection": self.collection,
                "max_tokens": self.max_tokens, "temperature": 0}  # fmt: skip
        started = time.perf_counter()
        for attempt in range(RETRIES + 1):
            try:
                response = await self.client.post(f"{self.base}/ask", json=body)
            except httpx.HTTPError as e:
                return Asked("", latency_s=time.perf_counter() - started, error=repr(e))
            if response.status_code in (429, 503) and attempt < RETRIES:
                wait = float(response.headers.get("retry-after", 1) or 1)
                await asyncio.sleep(min(wait, MAX_WAIT_S))
                continue
            break
        latency = time.perf_counter() - started
        if response.status_code != 200:
            return Asked("", latency_s=latency, error=f"HTTP {response.status_code}: "
                         f"{response.text[:200]}")  # fmt: skip
        data = response.json()
        usage = data.get("usage") or {}
        return Asked(
            data["answer"], [Cited(c["source"], c["quote"]) for c in data["citations"]],
            bool(data["refused"]), latency, int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )  # fmt: skip


def upload_corpus(
    url: str, collection: str, files: Sequence[Path], root: Path, api_key: str | None = None
) -> int:
    """Creates the collection and uploads `files` named by their path under `root` (so a
    source keeps the directories the gold passages name); returns how many were uploaded.
    Re-uploading an unchanged file is a no-op on the server."""
    base = api_base(url)
    try:
        with httpx.Client(headers=request_headers(api_key), timeout=300.0) as client:
            client.post(f"{base}/collections", json={"name": collection}).raise_for_status()
            for path in files:
                name = Path(path).relative_to(root).as_posix()
                response = client.post(
                    f"{base}/collections/{collection}/documents",
                    files={"file": (name, Path(path).read_bytes(), "text/plain")},
                )
                response.raise_for_status()
    except httpx.HTTPStatusError as e:
        raise ServerError(f"{e.request.url}: HTTP {e.response.status_code} "
                          f"{e.response.text[:200]}") from None  # fmt: skip
    except httpx.HTTPError as e:
        raise ServerError(f"{base}: {e!r}") from None
    return len(files)
