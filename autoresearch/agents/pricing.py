"""List prices of common API models, for when the API reports tokens but not dollars.

USD per million (input, output) tokens, from the providers' pricing pages (late 2025). A model not
listed has an unknown cost (None): --max-cost then cannot protect you, and the loop says so.
Matching is by longest prefix, so dated ids ("claude-sonnet-4-5-20250929") find their family.
"""

from __future__ import annotations

PRICES: dict[str, tuple[float, float]] = {
    # Anthropic
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    # OpenAI
    "gpt-5.1": (1.25, 10.0),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
}


def estimate_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Dollar cost at list price, or None for a model not in PRICES."""
    name = model.lower().rsplit("/", 1)[-1]  # OpenRouter-style "anthropic/claude-sonnet-4-5"
    matches = [prefix for prefix in PRICES if name.startswith(prefix)]
    if not matches:
        return None
    price_in, price_out = PRICES[max(matches, key=len)]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6
