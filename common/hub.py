"""Whether the Hugging Face hub can be reached, decided in about a second and before transformers is imported.

Without this, a hub id on a machine with no network waits 25-40 s in huggingface_hub's retries before it
fails (and a cached model waits as long before it is used).
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
# A TCP connection to the hub (or the proxy in front of it) is set up in well under a second on any
# working network; DNS has no timeout of its own, so the whole probe runs in a thread that is not awaited longer.
CONNECT_TIMEOUT_SECONDS = 1.0
TRUE_VALUES = ("1", "on", "yes", "true")  # as huggingface_hub reads HF_HUB_OFFLINE


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(
        os.environ.get(name, "").strip().lower() in TRUE_VALUES for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_unreachable_reason(timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """Why the hub cannot be used now ('HF_HUB_OFFLINE is set', 'the hub cannot be reached (huggingface.co:
    Name or service not known)'), or None.

    Opens one TCP connection to HF_ENDPOINT's host, or to the HTTPS proxy the environment names for it
    (HTTPS_PROXY, ALL_PROXY; NO_PROXY respected); nothing is sent.
    """
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    url = urlsplit(endpoint)
    host, port, via = url.hostname or "", url.port or (443 if url.scheme == "https" else 80), url.hostname
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(url.scheme)
    if proxy:
        proxy_url = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname or "", proxy_url.port or 80
        via = f"proxy {host}:{port}"
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_seconds).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout_seconds + 0.5)
    if not outcome:
        return f"the hub cannot be reached ({via} did not answer within {timeout_seconds:g} s)"
    if outcome[0] is not None:
        return f"the hub cannot be reached ({via}: {getattr(outcome[0], 'strerror', None) or outcome[0]})"
    return None
