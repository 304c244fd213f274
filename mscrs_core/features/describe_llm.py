"""Eq. (2) as the paper does it: ask a chat LLM (GPT-4o in the paper) to describe each item.

``v_i^t = F_GPT(i; theta_p)`` with ``theta_p`` the Figure 3 prompt template, kept verbatim in
``prompt_template.txt`` (placeholder ``{movie_name}``). Any OpenAI-compatible
``/chat/completions`` endpoint works (OpenAI, vLLM, llama.cpp server, Ollama, ...).
Only the standard library is used for HTTP.

Configuration: arguments, else the environment variables ``MSCRS_LLM_BASE_URL``,
``MSCRS_LLM_MODEL``, ``MSCRS_LLM_API_KEY`` (falling back to ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``). The API key is sent only in the ``Authorization`` header, only to the
endpoint's origin (a redirect to another scheme, host or port is refused, not followed): it never
appears in logs, reprs or exception messages.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

from .describer_cache import DescriptionCache, ItemInfo, ItemKey, _check_unique_keys

log = logging.getLogger(__name__)

ENV_BASE_URL = "MSCRS_LLM_BASE_URL"
ENV_MODEL = "MSCRS_LLM_MODEL"
ENV_API_KEY = "MSCRS_LLM_API_KEY"
PAPER_MODEL = "gpt-4o"


def load_prompt_template(path: str | os.PathLike | None = None) -> str:
    """The Figure 3 prompt template (``prompt_template.txt`` beside this module), or the file at ``path``."""
    if path is None:
        text = resources.files("mscrs_core.features").joinpath("prompt_template.txt").read_text(encoding="utf-8")
        where = "prompt_template.txt"
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: prompt template file not found")
        text, where = p.read_text(encoding="utf-8"), str(p)
    text = text.rstrip("\n")
    if "{movie_name}" not in text:
        raise ValueError(f"{where}: a prompt template must contain the placeholder {{movie_name}}")
    return text


class LLMDescriberError(RuntimeError):
    """A request for one item failed for good (non-retryable status, retries exhausted, malformed reply)."""

    def __init__(self, message: str, *, item_key: ItemKey | None = None, status: int | None = None):
        super().__init__(message)
        self.item_key = item_key
        self.status = status


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: two URLs share an origin iff these match."""
    u = urllib.parse.urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme.lower())
    return u.scheme.lower(), (u.hostname or "").lower(), port


class _CrossOriginRedirect(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the endpoint's origin: the ``Authorization`` header (the API key) would
    otherwise be sent to whatever host the redirect names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            scheme, host, port = _origin(target)
            raise _CrossOriginRedirect(f"{scheme}://{host}" + (f":{port}" if port else ""))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class LLMDescriber:
    """Item descriptions from an OpenAI-compatible chat-completions endpoint (Eq. 2, Figure 3).

    - ``base_url``: e.g. ``https://api.openai.com/v1`` (``/chat/completions`` is appended unless present).
    - ``requests_per_second``: at most this many requests start per second (rate limit).
    - Retries: HTTP 429 and 5xx, connection errors and timeouts are retried up to ``max_retries``
      times with exponential backoff ``backoff_base * 2**attempt`` (capped at ``backoff_max``;
      a 429's ``Retry-After`` is honoured up to the cap). Other 4xx (401, 403, 400, ...) fail at once.
    - ``cache_dir``: one JSON file per item (see :class:`DescriptionCache`); cached items are not
      requested again, so an interrupted run resumes and a complete re-run makes zero requests.
    - ``temperature`` / ``max_tokens``: sent when not ``None`` (some models reject one or the other).

    ``requests_made`` counts HTTP requests sent by this object (retries included).
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 cache_dir: str | os.PathLike | None = None, template: str | None = None,
                 requests_per_second: float = 1.0, max_retries: int = 5, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, timeout: float = 120.0, temperature: float | None = 0.0,
                 max_tokens: int | None = None, system_prompt: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        base_url = base_url or os.environ.get(ENV_BASE_URL) or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError(f"LLMDescriber needs an endpoint: pass base_url= or set ${ENV_BASE_URL} "
                             "(e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1)")
        base_url = base_url.rstrip("/")
        self.url = base_url if base_url.endswith("/chat/completions") else base_url + "/chat/completions"
        self.model = model or os.environ.get(ENV_MODEL) or PAPER_MODEL
        self._api_key = api_key if api_key is not None else (os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY"))
        if requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.template = template if template is not None else load_prompt_template()
        if "{movie_name}" not in self.template:
            raise ValueError("template must contain the placeholder {movie_name}")
        self.min_interval = 1.0 / requests_per_second
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self._sleep = sleep
        self._last_request: float | None = None
        self.requests_made = 0
        self._opener = urllib.request.build_opener(_SameOriginRedirects)  # never sends the key to another origin
        tmpl_hash = hashlib.sha256((self.system_prompt or "").encode() + b"\0" + self.template.encode()).hexdigest()[:16]
        self.fingerprint = f"llm:{self.model}:prompt-{tmpl_hash}"
        self.cache = DescriptionCache(cache_dir, self.fingerprint) if cache_dir is not None else None

    def __repr__(self) -> str:  # never the key
        return (f"LLMDescriber(url={self.url!r}, model={self.model!r}, api_key={'set' if self._api_key else 'unset'}, "
                f"cache={str(self.cache.root) if self.cache else None!r})")

    # -- prompting ------------------------------------------------------------------------
    def prompt_for(self, item: ItemInfo) -> str:
        """Figure 3 with the item's name in place of ``{movie_name}`` (replace, not format: titles may hold braces)."""
        return self.template.replace("{movie_name}", item.name)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _wait_rate_limit(self) -> None:
        now = time.monotonic()
        if self._last_request is not None:
            wait = self._last_request + self.min_interval - now
            if wait > 0:
                self._sleep(wait)
        self._last_request = time.monotonic()

    def _post_once(self, body: bytes, item: ItemInfo) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self._wait_rate_limit()
        self.requests_made += 1
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.read()
        except _CrossOriginRedirect as r:
            raise LLMDescriberError(
                self._scrub(f"{self.url}: the server redirected the request for item {item.key!r} to another origin "
                            f"({r.target}); not followed, so the API key is not sent there. If that endpoint is the "
                            f"right one, set base_url / ${ENV_BASE_URL} to it"),
                item_key=item.key) from None
        except urllib.error.HTTPError as e:
            try:
                detail = e.read().decode("utf-8", "replace")[:300]
            except Exception:  # the body is only a hint for the message
                detail = ""
            if e.code == 429 or e.code >= 500:
                ra = e.headers.get("Retry-After") if e.headers else None
                try:
                    retry_after = float(ra) if ra is not None else None
                except ValueError:
                    retry_after = None
                raise _Retryable(f"HTTP {e.code}", retry_after) from None
            raise LLMDescriberError(
                self._scrub(f"{self.url}: HTTP {e.code} for item {item.key!r} ({item.name!r}); not retried"
                            + (" (check the API key / MSCRS_LLM_API_KEY)" if e.code in (401, 403) else "")
                            + (f": {detail}" if detail else "")),
                item_key=item.key, status=e.code) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            raise _Retryable(f"connection error ({reason})") from None

    def _parse(self, raw: bytes, item: ItemInfo) -> str:
        where = f"{self.url}: reply for item {item.key!r} ({item.name!r})"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LLMDescriberError(self._scrub(f"{where} is not JSON: {raw[:120]!r}"), item_key=item.key) from None
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list) or not choices:
            raise LLMDescriberError(f"{where} has no 'choices' list (OpenAI chat-completions format expected)",
                                    item_key=item.key)
        msg = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            raise LLMDescriberError(f"{where} has no text in choices[0].message.content", item_key=item.key)
        return content.strip()

    def _request(self, item: ItemInfo) -> str:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.prompt_for(item)})
        payload: dict = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        body = json.dumps(payload).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            try:
                return self._parse(self._post_once(body, item), item)
            except _Retryable as r:
                if attempt == self.max_retries:
                    raise LLMDescriberError(self._scrub(
                        f"{self.url}: item {item.key!r} ({item.name!r}) failed after {attempt + 1} attempts: {r.reason}"),
                        item_key=item.key) from None
                delay = min(self.backoff_max, self.backoff_base * (2 ** attempt))
                if r.retry_after is not None:
                    delay = min(self.backoff_max, max(delay, r.retry_after))
                log.warning("item %r: %s; retry %d/%d in %.1fs", item.key, r.reason, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- the interface --------------------------------------------------------------------
    def describe(self, items: Sequence[ItemInfo]) -> dict[ItemKey, str]:
        """Eq. (2) for every item, in order; cached items are read, the rest requested and cached one by one."""
        _check_unique_keys(items)
        out: dict[ItemKey, str] = {}
        for item in items:
            cached = self.cache.get(item.key) if self.cache else None
            if cached is not None:
                out[item.key] = cached
                continue
            text = self._request(item)
            if self.cache:
                self.cache.put(item.key, item.name, text)
            out[item.key] = text
        return out
