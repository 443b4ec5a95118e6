"""The probe's tables: the study's Table 1 layout plus the information gap, as Markdown.

Numbers are `mean ± standard error over problems`; the same text goes to the terminal and
to `probe.md`.
"""

from __future__ import annotations

import math

STUDY_TABLE_1 = {  # REFERENCE.md, Table 1 (DeepSeek-R1-Distill-Qwen-7B): score, response tokens, epistemic words
    "none": (0.30, 13054, 182.5),
    "solution": (0.98, 1873, 8.8),
    "solution_nothink": (0.78, 12036, 159.8),
    "regenerated": (0.95, 2808, 24.1),
}


def pm(value: dict | tuple, digits: int = 2, style: str = "f") -> str:
    """{"mean", "se"} or (mean, se) -> "0.30 ± 0.04" (style "g": significant digits, for
    small numbers such as per-token divergences); a NaN SE (one problem) is left out."""
    mean, se = (value["mean"], value["se"]) if isinstance(value, dict) else value
    if mean is None or math.isnan(mean):
        return "n/a"
    spec = f",.{digits}{style}"
    return format(mean, spec) if se is None or math.isnan(se) else f"{format(mean, spec)} ± {format(se, spec)}"


def format_tables(summary: dict) -> str:
    problems = summary["problems"]
    lo, hi = problems["band"]
    lines = [
        f"Problems: {problems['selected']} of {problems['tried']} tried, unguided solve count {lo} to {hi}; "
        f"solve-count histogram {problems['solve_count_histogram']}.",
        "",
        "| context | score | response tokens | epistemic words (paper) | epistemic words (word) | study: score / tokens / words |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary["contexts"].items():
        study = STUDY_TABLE_1.get(name)
        reference = f"{study[0]:.2f} / {study[1]:,} / {study[2]}" if study else ""
        lines.append(f"| {name} | {pm(row['score'])} | {pm(row['response_tokens'], 1)} | {pm(row['markers_paper'])} | {pm(row['markers_word'])} | {reference} |")
    estimator = summary["estimator"]
    lines += [
        "",
        f"Information gap (nats) under the truncated sampler {sampler_text(estimator)} (samples scored under the {estimator['entropy_under']} distribution; "
        "its entropy is far below the model's own), and the "
        f"per-token {estimator['divergence']} on the student's samples, split by epistemic-marker tokens.",
        "",
        "Marker / other: per sub-token (every piece of a marker), per occurrence by its first piece, and per occurrence summed over its pieces.",
        "",
        "| context | H(y given x, c) | gap per response | gap per token | divergence per token | marker / other (sub-token) | (first piece) | (summed) | marker share | marker tokens | contexts cut |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary["contexts"].items():
        if "gap" not in row:
            lines.append(f"| {name} | {pm(row['entropy'])} (H(y given x)) | 0 | 0 | 0 | | | | | | {row.get('truncated_prompts', 0)} |")
            continue
        split = row["divergence"]
        lines.append(
            f"| {name} | {pm(row['entropy_context'])} | {pm(row['gap'])} | {pm(row['gap_per_token'], 3)} | "
            f"{pm((split['mean'], split['mean_se']), 3, 'g')} | {pm((split['ratio'], split['ratio_se']))} | "
            f"{pm((split.get('first_piece_ratio', math.nan), split.get('first_piece_ratio_se', math.nan)))} | "
            f"{pm((split.get('occurrence_sum_ratio', math.nan), split.get('occurrence_sum_ratio_se', math.nan)))} | "
            f"{pm((split['marker_share'], split['marker_share_se']), 3)} | {split['marker_tokens']} | {row.get('truncated_prompts', 0)} |"
        )
    if any("model_distribution" in row for row in summary["contexts"].values()):
        lines += [
            "",
            "Information gap (nats) under the model's own distribution: temperature 1, no top-k/top-p (fresh samples, scored under the model).",
            "",
            "| context | H(y given x, c) | gap per response | gap per token |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in summary["contexts"].items():
            own = row.get("model_distribution")
            if own:
                lines.append(f"| {name} | {pm(own['entropy_context'])} | {pm(own['gap'])} | {pm(own['gap_per_token'], 3)} |")
    return "\n".join(lines)


def sampler_text(estimator: dict) -> str:
    sampler = estimator.get("sampler")
    return f"(temperature {sampler['temperature']:g}, top-k {sampler['top_k']}, top-p {sampler['top_p']:g})" if sampler else ""
