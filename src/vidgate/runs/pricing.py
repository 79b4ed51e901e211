"""What a run costs: a model's price table, in the pricing kinds upstream uses.

Upstream prices video models per video (fixed), per second, by resolution, by duration tier
(5 s vs 10 s), or by mode (text or image to video: here, two models). A table combines a
per-video part and a per-second part:

* the per-video part is ``by_resolution_usd[resolution]``, else the price of the smallest
  ``by_duration_usd`` tier that holds the duration (the largest tier past the last one),
  else ``per_video_usd``;
* the per-second part is ``per_second_by_resolution_usd[resolution]``, else
  ``per_second_usd``, times the seconds of video.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pricing:
    per_video_usd: float = 0.0
    per_second_usd: float = 0.0
    by_resolution_usd: Mapping[str, float] = field(default_factory=dict)
    per_second_by_resolution_usd: Mapping[str, float] = field(default_factory=dict)
    by_duration_usd: Mapping[int, float] = field(default_factory=dict)

    def cost(self, seconds: float, resolution: str | None) -> float:
        """The price of ``seconds`` of video at ``resolution`` (the model's default when the
        request names none), in USD, rounded to micro-dollars."""
        base = self.per_video_usd
        if self.by_duration_usd:
            tiers = sorted(self.by_duration_usd)
            tier = next((t for t in tiers if seconds <= t), tiers[-1])
            base = self.by_duration_usd[tier]
        if resolution is not None and resolution in self.by_resolution_usd:
            base = self.by_resolution_usd[resolution]
        rate = self.per_second_usd
        if resolution is not None and resolution in self.per_second_by_resolution_usd:
            rate = self.per_second_by_resolution_usd[resolution]
        return round(base + rate * seconds, 6)

    @property
    def is_free(self) -> bool:
        return not any(
            (
                self.per_video_usd,
                self.per_second_usd,
                *self.by_resolution_usd.values(),
                *self.per_second_by_resolution_usd.values(),
                *self.by_duration_usd.values(),
            )
        )

    def problems(self, resolutions: Iterable[str]) -> list[str]:
        """What is wrong with this table for a model offering ``resolutions`` (empty: any):
        a resolution the model does not offer is a typo that would price nothing."""
        offered = set(resolutions)
        found = []
        for name, table in (
            ("price_by_resolution_usd", self.by_resolution_usd),
            ("price_per_second_by_resolution_usd", self.per_second_by_resolution_usd),
        ):
            unknown = sorted(set(table) - offered) if offered else []
            if unknown:
                found.append(
                    f"{name} names {', '.join(map(repr, unknown))}, which the model does not "
                    f"offer (its resolutions: {', '.join(sorted(offered))})"
                )
        return found

    def to_json(self, resolutions: Sequence[str] = ()) -> dict[str, Any]:
        """The catalog's ``pricing`` object for a model offering ``resolutions``: prices as
        maps by resolution, as clients read them (``per_video: {"480p": 0.72}``).

        * ``per_video``: the per-video part at each offered resolution (a free model's map
          holds zeros); where a duration tier sets it, only the resolutions priced apart;
        * ``per_second``: the rate at each offered resolution, when the model has one;
        * ``per_duration``: the tiers, ``{"5": 0.5, "10": 0.9}`` (seconds as strings).

        A model offering no resolution list is priced under the key ``"default"`` (and the
        resolutions its tables name)."""
        names = list(resolutions) or ["default"]
        pricing: dict[str, Any] = {"currency": "USD"}
        per_video = dict(self.by_resolution_usd)
        if not self.by_duration_usd:
            per_video = {r: self.by_resolution_usd.get(r, self.per_video_usd) for r in names}
            per_video.update(self.by_resolution_usd)
        if per_video:
            pricing["per_video"] = per_video
        if self.by_duration_usd:
            pricing["per_duration"] = {str(k): v for k, v in sorted(self.by_duration_usd.items())}
        if self.per_second_usd or self.per_second_by_resolution_usd:
            rates = self.per_second_by_resolution_usd
            per_second = {r: rates.get(r, self.per_second_usd) for r in names}
            per_second.update(rates)
            pricing["per_second"] = per_second
        return pricing
