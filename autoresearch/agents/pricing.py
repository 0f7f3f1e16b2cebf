"""List prices of API models, for when the API reports tokens but not dollars.

USD per million (input, output) tokens, as read on PRICES_READ from PRICE_SOURCES. A model not
listed has an unknown price: pass your own with --price-in/--price-out, or --max-cost refuses to
start. A model is listed only when its price could be confirmed; guessing would make --max-cost a
false promise.

Matching is exact, after two documented family rules and nothing else:
    an OpenRouter-style vendor prefix is dropped: "anthropic/claude-opus-4-5" -> "claude-opus-4-5"
    a dated snapshot suffix is dropped: "claude-sonnet-4-5-20250929" -> "claude-sonnet-4-5",
                                        "gpt-4o-2024-08-06" -> "gpt-4o"
so "o3-pro" is not priced as "o3", nor a new Opus at an old Opus price. A snapshot priced
differently from its family is listed under its own id (gpt-4o-2024-05-13), which wins.

Left out on purpose: Claude Haiku 5.5 (priced by prompt length, not one rate), models whose API ids
could not be confirmed, and OpenAI models newer than gpt-5.2 (sources disagreed). Claude Sonnet 4
and 4.5 cost more for prompts over 200K tokens; the prompts here are far below that.
"""

from __future__ import annotations

import re

PRICES_READ = "2026-11-30"  # the day the prices below were read
PRICE_SOURCES = (
    "https://platform.claude.com/docs/en/about-claude/pricing and its per-model pages",
    "https://developers.openai.com/api/docs/pricing (cross-checked against OpenRouter's listing)",
)

Price = tuple[float, float]  # USD per million (input, output) tokens

PRICES: dict[str, Price] = {
    # Anthropic (aliases and ids as the Claude API names them)
    "claude-opus-5-5": (4.0, 20.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-opus-4-8": (5.0, 25.0),
    "claude-opus-4-7": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),  # claude-opus-4-20250514
    "claude-opus-4-0": (15.0, 75.0),
    "claude-sonnet-5-5": (2.0, 10.0),
    "claude-sonnet-5": (2.0, 10.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),  # claude-sonnet-4-20250514
    "claude-sonnet-4-0": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
    # OpenAI
    "gpt-5.2": (1.75, 14.0),
    "gpt-5.1": (1.25, 10.0),
    "gpt-5": (1.25, 10.0),
    "gpt-5-pro": (15.0, 120.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-05-13": (5.0, 15.0),  # the first gpt-4o snapshot kept its launch price
    "gpt-4o-mini": (0.15, 0.6),
    "o3": (2.0, 8.0),
    "o3-pro": (20.0, 80.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
}

DATED_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")  # -20250929, -2024-08-06


def list_price(model: str) -> Price | None:
    """The list price of `model` by the rules in the module docstring, or None if unknown."""
    name = model.strip().lower().split("/", 1)[-1]  # one vendor segment, as OpenRouter's
    for candidate in (name, DATED_SUFFIX.sub("", name)):
        if candidate in PRICES:
            return PRICES[candidate]
    return None


def dollars(price: Price | None, input_tokens: int, output_tokens: int) -> float | None:
    """What the tokens cost at `price`; None when the price is unknown."""
    if price is None:
        return None
    price_in, price_out = price
    return (input_tokens * price_in + output_tokens * price_out) / 1e6
