"""The remedies' config sections (docs/remedies.md), part of `sdlab.config.schema`: a recipe's
`sdpo.context_schedule` and a sweep file's `remedies:` rule. Kept apart so the schema module
stays readable; import them from either."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from sdlab.config import StrictModel

DISTILL_ROWS = ("all", "agreeing")
SCHEDULED = ("solution", "solution_nothink")  # the contexts a richness schedule runs between


def remedy_problem(*, context: str, marker_weight: float, divergence_clip: float | None, distill_rows: str,
                   schedule_start: str | None, schedule_steps: int, schedule_share: float | None) -> str | None:
    """What is wrong with a set of remedy settings (None: nothing), in one line naming the field.
    Shared by the recipe schema and the trainer's config, so the two refuse the same things."""
    if marker_weight < 0:
        return f"marker_weight={marker_weight}: must be >= 0 (1 leaves the loss unchanged, 0 masks the markers)"
    if divergence_clip is not None and divergence_clip <= 0:
        return f"divergence_clip={divergence_clip}: must be > 0, or unset for no clip"
    if distill_rows not in DISTILL_ROWS:
        return f"distill_rows={distill_rows!r}: allowed {', '.join(DISTILL_ROWS)}"
    if distill_rows == "agreeing" and context == "feedback":
        return "distill_rows=agreeing compares a rollout with the context's answer; context=feedback has none: use a solution context or distill_rows=all"
    if schedule_start is None:
        return None
    if {context, schedule_start} != set(SCHEDULED):
        return f"context schedule from {schedule_start!r} to context={context!r}: it runs between solution and solution_nothink, one at each end"
    if schedule_steps < 0:
        return f"context schedule steps={schedule_steps}: must be >= 0"
    if schedule_share is not None and not 0.0 <= schedule_share <= 1.0:
        return f"context schedule share={schedule_share}: must be in [0, 1]"
    return None


class ContextScheduleConfig(StrictModel):
    """The richness schedule: each rollout's teacher sees `start` or `sdpo.context` (the end); the
    share given the end goes linearly from 0 at step 0 to 1 at step `steps`, or is `share` throughout
    (a fixed mix). Which rollouts is drawn from the seed and step, so a run resumes the same."""

    start: Literal["solution", "solution_nothink"]
    steps: int = Field(0, ge=0)  # generation batches of the ramp (0: the end context from the start)
    share: float | None = Field(None, ge=0, le=1)  # a constant share of the end context instead of the ramp


class RemediesConfig(StrictModel):
    """How the report judges a remedies sweep (docs/remedies.md), fixed before any result: the
    `axis` levels that are the controls, each remedy's knob levels (one chosen per remedy: the
    highest mean over seeds of the mean of the `choose_by` columns, ties to the earlier listed;
    training reward and ID curves only, never OOD), and the goal's share `keep`. With
    `screen_seeds` the knob is chosen on those seeds alone, so only the chosen level needs the
    other seeds: a cheaper protocol, fixed before any result like the rest."""

    axis: str = "remedy"
    sdpo: str = "sdpo"
    grpo: str = "grpo"
    knobs: dict[str, list[str]] = Field(min_length=1)  # remedy -> its levels of `axis`
    choose_by: list[str] = Field(default_factory=lambda: ["train_reward_last_third", "id_curve_mean"], min_length=1)
    keep: float = Field(0.8, gt=0, le=1)  # the share of SDPO's length reduction (and ID gain) a remedy must keep
    screen_seeds: list[int] | None = None  # choose on these seeds' cells alone (run every level on them, then the chosen one on the rest)

    @field_validator("choose_by")
    @classmethod
    def _never_ood(cls, columns: list[str]) -> list[str]:
        if any("ood" in column for column in columns):
            raise ValueError(f"choose_by {columns}: a knob is chosen on training reward and ID curves only, never on an OOD column")
        return columns

    def named_levels(self) -> list[str]:
        """The levels of `axis` the rule judges: the two controls, then every knob level."""
        return [self.sdpo, self.grpo, *(label for labels in self.knobs.values() for label in labels)]

    def check_levels(self, grid: dict[str, Any]) -> None:
        """The controls and knobs name distinct levels of the sweep's named-levels `axis`."""
        levels = grid.get(self.axis)
        if not isinstance(levels, dict):
            raise ValueError(f"remedies: the grid needs a named-levels axis {self.axis!r} (e.g. {self.axis}: {{sdpo: {{}}, grpo: {{method: grpo}}}})")
        named = self.named_levels()
        unknown = [str(label) for label in named if label not in levels]
        if unknown or len(set(named)) != len(named):
            raise ValueError(f"remedies: {', '.join(unknown) or 'a level named twice'}: each control and knob must be one distinct level of grid.{self.axis} ({', '.join(map(str, levels))})")

