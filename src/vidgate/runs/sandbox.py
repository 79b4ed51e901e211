"""The testcard sandbox switches: prompt tokens that rehearse every outcome.

``sandbox:fail``, ``sandbox:nsfw``, ``sandbox:cancel``, ``sandbox:slow=N`` (render takes at
least N seconds) and ``sandbox:queue=N`` (the run waits N seconds in the queue). Tokens are
case-insensitive and removed from the text that is rendered. ``sandbox:blocked`` is not a
switch: the default moderation policy refuses it at submit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SECONDS = 600.0
_TOKEN = re.compile(
    r"\bsandbox:(fail|nsfw|cancel|slow|queue)(?:=(\d+(?:\.\d+)?)s?)?(?=\s|$|[.,;!?])", re.IGNORECASE
)


@dataclass(frozen=True)
class SandboxSwitches:
    fail: bool = False
    nsfw: bool = False
    cancel: bool = False
    slow_s: float = 0.0
    queue_s: float = 0.0


def parse_sandbox(prompt: str | None) -> tuple[str, SandboxSwitches]:
    """Split a prompt into the text to render and the switches it carries."""
    if not prompt:
        return prompt or "", SandboxSwitches()
    found: dict[str, float] = {}
    for match in _TOKEN.finditer(prompt):
        name, value = match.group(1).lower(), match.group(2)
        found[name] = min(float(value), MAX_SECONDS) if value else 1.0
    text = re.sub(r"\s{2,}", " ", _TOKEN.sub("", prompt)).strip()
    return text, SandboxSwitches(
        fail="fail" in found,
        nsfw="nsfw" in found,
        cancel="cancel" in found,
        slow_s=found.get("slow", 0.0) if "slow" in found else 0.0,
        queue_s=found.get("queue", 0.0) if "queue" in found else 0.0,
    )
