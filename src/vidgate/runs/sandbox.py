"""The testcard sandbox switches: prompt tokens that rehearse every outcome.

``sandbox:fail``, ``sandbox:nsfw``, ``sandbox:cancel``, ``sandbox:slow=N`` (rendering takes
at least N seconds) and ``sandbox:queue=N`` (the run waits N seconds in the queue). Tokens
are case-insensitive and removed from the text that is rendered; unknown ``sandbox:`` words
stay. ``sandbox:blocked`` is not a switch: the default moderation policy refuses it at
submit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_SANDBOX_S = 600.0
_SANDBOX_RE = re.compile(
    r"(?<![\w:])sandbox:(fail|nsfw|cancel|slow=(\d+(?:\.\d+)?)s?|queue=(\d+(?:\.\d+)?)s?)(?![\w.=:])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SandboxSwitches:
    """What the ``sandbox:`` tokens in a prompt asked for."""

    fail: bool = False
    nsfw: bool = False
    cancel: bool = False
    slow_s: float = 0.0
    queue_s: float = 0.0

    @property
    def stops_midway(self) -> bool:
        return self.fail or self.nsfw or self.cancel


def parse_sandbox(prompt: str | None) -> tuple[str, SandboxSwitches]:
    """Split ``sandbox:`` switches (case-insensitive) from the prompt; unknown ones stay."""
    found: dict[str, Any] = {}

    def take(match: re.Match[str]) -> str:
        word = match.group(1).lower()
        if match.group(2) is not None:
            found["slow_s"] = min(float(match.group(2)), MAX_SANDBOX_S)
        elif match.group(3) is not None:
            found["queue_s"] = min(float(match.group(3)), MAX_SANDBOX_S)
        else:
            found[word] = True
        return ""

    stripped = _SANDBOX_RE.sub(take, prompt or "")
    lines = (re.sub(r"[ \t]{2,}", " ", line).strip() for line in stripped.splitlines())
    return "\n".join(lines).strip(), SandboxSwitches(**found)
