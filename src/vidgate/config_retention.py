"""The ``[retention]`` settings: how long finished videos and runs are kept (both off by
default: nothing is ever deleted)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_S = 24 * 3600


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    videos_days: int | None = Field(None, ge=1)
    """Delete a run's video and thumbnail this many days after the run completed; the run
    stays ``COMPLETED`` and its polls say the video is gone. Unset: videos are kept."""
    runs_days: int | None = Field(None, ge=1)
    """Delete finished runs (and their webhook deliveries) this many days after they
    completed; at least ``videos_days``. Unset: runs are kept."""
    sweep_interval_s: float = Field(600, ge=1)
    """How often each worker process looks for what has expired."""
    batch: int = Field(200, ge=1, le=10_000)
    """Videos (or runs) deleted per step of a sweep; a sweep goes on until none is left."""

    @model_validator(mode="after")
    def _check_order(self) -> RetentionSettings:
        if self.runs_days is None:
            return self
        if self.videos_days is None:
            raise ValueError(
                f"retention.runs_days ({self.runs_days}) needs retention.videos_days: a run's "
                f"video is deleted before its row; set videos_days to {self.runs_days} or fewer"
            )
        if self.runs_days < self.videos_days:
            raise ValueError(
                f"retention.runs_days ({self.runs_days}) must be at least retention.videos_days "
                f"({self.videos_days}): a run is kept at least as long as its video"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.videos_days is not None

    def videos_before(self, now: float) -> float | None:
        """Runs that completed before this moment have expired videos (None: never)."""
        return None if self.videos_days is None else now - self.videos_days * DAY_S

    def runs_before(self, now: float) -> float | None:
        """Runs that completed before this moment have expired rows (None: never)."""
        return None if self.runs_days is None else now - self.runs_days * DAY_S
