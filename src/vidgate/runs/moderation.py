"""The submit-time content policy: words and regular expressions from the config."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vidgate.runs.errors import ContentPolicyViolation, InvalidRequest
from vidgate.runs.request import GenerationRequest


class Moderation:
    def __init__(self, words: Iterable[str], patterns: Iterable[str], message: str) -> None:
        parts = [rf"\b{re.escape(w)}\b" for w in words if w.strip()]
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidRequest(f"moderation pattern {pattern!r} is invalid: {exc}") from None
            parts.append(f"(?:{pattern})")
        self._regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.message = message

    def check(self, request: GenerationRequest) -> None:
        """Raise :class:`ContentPolicyViolation` if the prompt is blocked."""
        if self._regex is None:
            return
        for text in (request.prompt, request.negative_prompt):
            if text and self._regex.search(text):
                raise ContentPolicyViolation(self.message)
