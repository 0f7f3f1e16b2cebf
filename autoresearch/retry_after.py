"""How long a server asked us to wait, read once for downloads and LLM backends alike.

Three spellings are in use: `retry-after-ms` (milliseconds; OpenAI and Anthropic send it),
`Retry-After` in seconds, and `Retry-After` as an HTTP date (RFC 9110). The most precise one given
wins. Its own module so that the agents do not import the download code (pyarrow, progress bars)
just to parse one header.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait (0 for a date in the past), or None if it did not."""
    headers = response.headers  # case-insensitive
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither a number nor a date: fall back to our back-off
        return None
    if when.tzinfo is None:  # "-0000": a date in UTC without a named zone
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
