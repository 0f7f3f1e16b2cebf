"""A server's Retry-After header, read once for downloads and LLM backends alike.

Its own module so that the agents do not import the download code (pyarrow, progress bars)
just to parse one header.
"""

from __future__ import annotations

import requests


def retry_after_seconds(response: requests.Response) -> float | None:
    """The server's Retry-After in seconds, when it gave one as a number."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):  # absent, or an HTTP date: fall back to our back-off
        return None
