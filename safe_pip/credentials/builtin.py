"""Built-in credential definitions, so that ``credentials = ["openai"]`` is enough.

Each entry is a ``[tool.safe-run.credentials.NAME]`` table, as a user would write it;
a user table of the same name overrides single keys (``source = "keyring"``, say).
``base-url`` is the API root an SDK's base-URL variable normally holds; with it the
credential defaults to the base-URL route (see docs/credentials.md), without it to
the TLS route, where the proxy terminates TLS for ``hosts`` with a per-run CA.
"""

from __future__ import annotations

BUILTIN_CREDENTIALS: dict[str, dict[str, object]] = {
    "openai": {
        "env": "OPENAI_API_KEY",
        "hosts": ["api.openai.com"],
        "base-url": "https://api.openai.com/v1",
        "base-url-env": "OPENAI_BASE_URL",
    },
    "anthropic": {
        "env": "ANTHROPIC_API_KEY",
        "hosts": ["api.anthropic.com"],
        "base-url": "https://api.anthropic.com",
        "base-url-env": "ANTHROPIC_BASE_URL",
    },
    # google-genai reads GEMINI_API_KEY (or GOOGLE_API_KEY) and GOOGLE_GEMINI_BASE_URL,
    # and sends the key in an x-goog-api-key header.
    "gemini": {
        "env": "GEMINI_API_KEY",
        "hosts": ["generativelanguage.googleapis.com"],
        "base-url": "https://generativelanguage.googleapis.com",
        "base-url-env": "GOOGLE_GEMINI_BASE_URL",
    },
    # No SDK base-URL variable covers github.com and the API at once: TLS route.
    "github": {
        "env": "GITHUB_TOKEN",
        "hosts": ["api.github.com", "github.com", "uploads.github.com"],
    },
    # huggingface_hub's HF_ENDPOINT; file downloads redirect to CDN hosts that need
    # no token (allow them under [tool.safe-run.network] if the program downloads).
    "huggingface": {
        "env": "HF_TOKEN",
        "hosts": ["huggingface.co"],
        "base-url": "https://huggingface.co",
        "base-url-env": "HF_ENDPOINT",
    },
}
