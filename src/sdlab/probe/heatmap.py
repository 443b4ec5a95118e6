"""Token heatmap: where on a response the teacher disagrees with the student.

One self-contained HTML page (inline CSS, no scripts, no external assets): for each context,
a few student responses with every token coloured by log p_student(y_t) - log p_teacher(y_t)
(red: the teacher finds the token less likely than the student, so distillation pushes it
down; blue: more likely), epistemic-marker tokens outlined, and the numbers in a tooltip.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from sdlab.core.epistemic import token_spans

MIN_SCALE = 0.5  # nats: the colour scale never saturates below this, so noise stays pale


@dataclass(frozen=True)
class HeatmapResponse:
    """One response as shown: decoded token pieces and per-token numbers (same length)."""

    title: str
    tokens: list[str]
    student_logp: list[float]
    teacher_logp: list[float]
    divergence: list[float]
    markers: list[bool]


def colour(value: float, scale: float) -> str:
    """Diverging white-centred scale: -scale -> blue, 0 -> white, +scale -> red."""
    x = max(-1.0, min(1.0, value / scale))
    fade = round(255 * (1 - abs(x)))
    return f"rgb(255,{fade},{fade})" if x > 0 else f"rgb({fade},{fade},255)"


def colour_scale(values: list[float]) -> float:
    """Symmetric scale at the 98th percentile of |log-ratio| (at least MIN_SCALE nats)."""
    if not values:
        return MIN_SCALE
    magnitudes = torch.tensor(values).abs()
    return max(MIN_SCALE, float(torch.quantile(magnitudes, 0.98)))


def _token_span(piece: str, student: float, teacher: float, div: float, marker: bool, scale: float) -> str:
    ratio = student - teacher
    tip = f"{piece!r}  log p_student={student:.3f}  log p_teacher={teacher:.3f}  log-ratio={ratio:+.3f}  divergence={div:.4f}" + ("  [marker]" if marker else "")
    css = "t m" if marker else "t"
    return f'<span class="{css}" style="background:{colour(ratio, scale)}" title="{html.escape(tip, quote=True)}">{html.escape(piece)}</span>'


def _legend(scale: float) -> str:
    stops = ", ".join(colour(scale * x / 4, scale) for x in range(-4, 5))
    return (
        '<div class="legend"><span>teacher more likely</span>'
        f'<span class="bar" style="background:linear-gradient(to right, {stops})"></span>'
        f"<span>student more likely</span> &nbsp; log p_student - log p_teacher from {-scale:.2f} to {scale:+.2f} nats; "
        '<span class="t m">outlined</span> = epistemic marker token; hover a token for its numbers.</div>'
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.resp { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.9; border: 1px solid #ccc; padding: .8em; margin-bottom: 1.2em; }
.t { padding: 1px 0; }
.m { outline: 2px solid #000; outline-offset: -1px; }
.legend { margin: 1em 0; } .bar { display: inline-block; width: 240px; height: 1em; vertical-align: middle; margin: 0 .5em; }
h2 { margin-top: 2em; } .note { color: #666; font-size: .9em; }
"""


def render_heatmap(blocks: dict[str, list[HeatmapResponse]], *, title: str = "sdlab probe: student vs teacher per token") -> str:
    """HTML page with one section per context name; the colour scale is shared by all."""
    scale = colour_scale([s - t for responses in blocks.values() for r in responses for s, t in zip(r.student_logp, r.teacher_logp)])
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>", _legend(scale)]
    for context, responses in blocks.items():
        parts.append(f"<h2>teacher context: {html.escape(context)}</h2>")
        if not responses:
            parts.append("<p class='note'>no responses to show</p>")
        for response in responses:
            spans = "".join(_token_span(*row, scale) for row in zip(response.tokens, response.student_logp, response.teacher_logp, response.divergence, response.markers))
            parts.append(f"<p class='note'>{html.escape(response.title)}</p><div class='resp'>{spans}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def heatmap_rows(records: list[dict], scores, markers, teacher: int, tokenizer, *, limit: int, max_tokens: int = 1500) -> list[HeatmapResponse]:
    """The first sample of each of the first `limit` problems, against teacher number `teacher`.

    `records` are sample dicts (problem_id, sample, correct, token_ids), `scores` their
    `sdlab.probe.scoring.ResponseScores`, `markers` their [T] marker masks. Long responses show
    their first `max_tokens` tokens."""
    rows = []
    for record, score, mask in zip(records, scores, markers):
        if record["sample"] != 0:
            continue
        if len(rows) >= limit:
            break
        ids = record["token_ids"][:max_tokens]
        text, spans = token_spans(ids, tokenizer)
        cut = f", first {max_tokens} of {len(record['token_ids'])} tokens" if len(record["token_ids"]) > max_tokens else ""
        rows.append(
            HeatmapResponse(
                title=f"problem {record['problem_id']}, sample 0 (correct: {record['correct']}{cut})",
                tokens=[text[a:b] for a, b in spans],
                student_logp=score.logp[: len(ids)].tolist(),
                teacher_logp=score.teacher_logp[teacher][: len(ids)].tolist(),
                divergence=score.divergence[teacher][: len(ids)].tolist(),
                markers=mask[: len(ids)].tolist(),
            )
        )
    return rows
