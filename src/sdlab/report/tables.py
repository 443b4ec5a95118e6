"""The report's numbers as text: formatted values and intervals, the by-method summary over
sweeps, the score columns each table shows, and the Markdown summary a README quotes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sdlab.report.inputs import Inputs, SweepData
from sdlab.report.remedies import judge_sweep


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def fmt_ci(row: dict[str, Any], column: str, digits: int = 3) -> str:
    mean, low, high = row.get(f"{column}_mean"), row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    interval = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else ""
    return fmt(mean, digits) + interval


def method_summary(sweeps: list[SweepData]) -> list[dict[str, Any]]:
    """Every finished cell of the given sweeps, grouped by method and ID set: the study's SDPO vs
    GRPO comparison over whatever coverages, contexts, teachers and seeds were run. It pools
    unmatched conditions, so it sits beside the matched per-sweep tables, never instead of them.
    A run made twice (same settings give the same numbers: the richness sweep's solution arm
    repeats the coverage sweep's 512 arm) counts once."""
    identity = ("method", "id_dataset", "seed", "train_data", "id_avg@k", "id_pass@k", "ood_avg@k", "id_tokens", "id_markers", "ood_tokens",
                "train_reward_mean", "train_response_tokens_mean", "train_markers_per_response")  # all equal: one run made twice
    groups: dict[tuple[Any, Any], dict[tuple, dict[str, Any]]] = {}
    for sweep in sweeps:
        for cell in sweep.results["cells"]:
            row = cell["row"]
            if row.get("status") == "done" and row.get("id_avg@k") is not None:
                groups.setdefault((row.get("method"), row.get("id_dataset")), {})[tuple(row.get(k) for k in identity)] = row
    summary = []
    for (method, dataset), unique in groups.items():
        rows = list(unique.values())

        def mean(key: str) -> float | None:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            return sum(values) / len(values) if values else None

        def spread(key: str) -> tuple[float, float]:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            return (min(values), max(values)) if values else (None, None)

        (tokens_low, tokens_high), (markers_low, markers_high) = spread("id_tokens"), spread("id_markers")
        summary.append({
            "method": method, "id_dataset": dataset, "runs": len(rows), "id_avg@k": mean("id_avg@k"), "id_pass@k": mean("id_pass@k"), "ood_avg@k": mean("ood_avg@k"),
            "id_tokens_min": tokens_low, "id_tokens_max": tokens_high, "id_markers_min": markers_low, "id_markers_max": markers_high,
            "early_warning_fired": sum(r.get("early_warning_step") is not None for r in rows),
            "base_id_avg@k": mean("base_id_avg@k"), "base_ood_avg@k": mean("base_ood_avg@k"),  # step 0's evaluation (its k may differ: no pass@k)
        })
    return sorted(summary, key=lambda r: (str(r["id_dataset"]), str(r["method"])))


def method_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    return [[fmt(r["method"]), fmt(r["id_dataset"]), str(r["runs"]), fmt(r["id_avg@k"]), fmt(r["id_pass@k"]), fmt(r["ood_avg@k"]),
             f"{fmt(r['id_tokens_min'], 0)}-{fmt(r['id_tokens_max'], 0)}", f"{fmt(r['id_markers_min'], 1)}-{fmt(r['id_markers_max'], 1)}",
             f"{r['early_warning_fired']}/{r['runs']}", f"{fmt(r['base_id_avg@k'])} / {fmt(r['base_ood_avg@k'])}"] for r in summary]


METHOD_COLUMNS = ["method", "ID set", "runs", "ID avg@k", "ID pass@k", "OOD avg@k", "ID tokens (range)", "ID markers (range)", "early warning fired", "base at step 0: ID / OOD avg@k"]


def fmt_id_score(row: dict[str, Any]) -> str:
    """ID avg@k with its interval over seeds, or, for a one-seed group, the run's interval over
    problems in parentheses (evaluation noise only: it says nothing of seed-to-seed spread)."""
    low, high = row.get("id_avg@k_problems_ci_low_mean"), row.get("id_avg@k_problems_ci_high_mean")
    if row.get("n") == 1 and row.get("id_avg@k_mean") is not None and low is not None and high is not None:
        return f"{fmt(row['id_avg@k_mean'])} ({fmt(low)}, {fmt(high)})"
    return fmt_ci(row, "id_avg@k")


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def periodic_steps(rows: list[dict[str, Any]]) -> list[int]:
    """The periodic-evaluation steps that every finished group of a sweep has (the aggregate's
    step<N> columns; a group still running has only its first steps and is left out)."""
    found = [{int(m.group(1)) for key in row if (m := re.fullmatch(r"step(\d+)_id_avg@k_mean", key))} for row in rows if row.get("finished")]
    return sorted(set.intersection(*found)) if found else []


def matched_steps_table(rows: list[dict[str, Any]], steps: list[int], label: Callable[[dict[str, Any]], str]) -> str:
    """Training reward since the previous evaluation, then ID and OOD avg@k, of every group at
    each periodic-evaluation step (mean over seeds): the comparison at matched steps, so that a
    final checkpoint cannot be a lucky one. The score columns are the final tables'
    (`score_columns`): each OOD set its own when there are two or more."""
    columns = score_columns(rows)
    rewarded = [s for s in steps if any(r.get(f"step{s}_train_reward_mean") is not None for r in rows)]  # windows after step 0
    header = ["group"] + [f"train reward to step {s}" for s in rewarded] + [f"{name} step {s}" for name, _ in columns for s in steps]
    body = [[label(r)] + [fmt(r.get(f"step{s}_train_reward_mean")) for s in rewarded] + [fmt(r.get(f"{at_step(key, s)}_mean")) for _, key in columns for s in steps] for r in rows]
    return markdown_table(header, body)


def at_step(column: str, step: int) -> str:
    """A score column at a periodic-evaluation step, as `collect_cell` names it:
    `id_avg@k` -> `step15_id_avg@k`, `SET/avg@k` -> `SET/step15_avg@k`."""
    name, slash, score = column.rpartition("/")
    return f"{name}/step{step}_{score}" if slash else f"step{step}_{column}"


def ood_sets(rows: list[dict[str, Any]]) -> list[str]:
    """A sweep's OOD data sets, when it has two or more: each gets its own avg@k column, since
    their mean can hide that one set measures transfer and another only how a model guesses
    (the organism's `sqmod`, and corpus version 8's f(f(x)) `linmod-hard`; docs/organism.md)."""
    id_sets = {r.get("id_dataset") for r in rows}
    names = [name for name in dict.fromkeys(k.removesuffix("/avg@k_mean") for r in rows for k in r if k.endswith("/avg@k_mean")) if name not in id_sets]
    return names if len(names) > 1 else []


def ood_set_header(name: str) -> str:
    return f"OOD {name.removeprefix('organism_')}"


def scored_sets(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, what is scored) of every accuracy the tables, plots and pass@k panels show:
    ("ID", "ID"), then each OOD set by name when there are two or more (see `ood_sets`), else
    ("OOD", "OOD"), the mean over the OOD sets."""
    per_set = ood_sets(rows)
    return [("ID", "ID"), *((ood_set_header(name), name) for name in per_set)] if per_set else [("ID", "ID"), ("OOD", "OOD")]


def score_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, aggregate column) of `scored_sets`."""
    return [(header, {"ID": "id_avg@k", "OOD": "ood_avg@k"}.get(which, f"{which}/avg@k")) for header, which in scored_sets(rows)]


def band(row: dict[str, Any], column: str) -> tuple[Any, Any, Any]:
    """An aggregate column's mean and 95% interval, as the interval plots take it."""
    return tuple(row.get(f"{column}_{part}") for part in ("mean", "ci_low", "ci_high"))


def chosen_label(choice: dict[str, Any], axis: str) -> str:
    """How a selection's outcome reads in the console and in Markdown: the level, or why none yet."""
    return f"none yet ({choice['finished']} cells finished)" if choice[axis] is None else f"{choice[axis]:g}"


def selection_markdown(results: dict[str, Any]) -> str:
    """The sweep's selection rule, every level's score and the level it chose, per group."""
    select = results["select"]
    levels = sorted({level for choice in results["selection"] for level in choice["scores"]})
    rows = [[", ".join(str(choice[key]) for key in select["per"]), *(fmt(choice["scores"].get(level)) for level in levels),
             chosen_label(choice, select["axis"])] for choice in results["selection"]]
    return (f"Sweep `{results['name']}`: {select['axis']} chosen per {', '.join(select['per'])} by the rule fixed before the runs: "
            f"highest `{select['metric']}` (mean over seeds), ties to the smaller {select['axis']}.\n\n"
            + markdown_table([", ".join(select["per"]), *(f"{select['axis']} {level:g}" for level in levels), "chosen"], rows))


def markdown_summary(inputs: Inputs, sweeps: list[SweepData]) -> str:
    """The numbers a README quotes, as Markdown: each probe's tables (as in its probe.md), each
    sweep's final ID/OOD accuracy, length and markers (mean [95% interval] over seeds), a remedies
    sweep's verdicts, and the by-method summary over all sweeps."""
    from sdlab.probe.tables import format_tables

    parts = [f"Probe `{probe}`: mean ± standard error over problems.\n\n" + format_tables(json.loads((probe / "probe.json").read_text())) for probe in inputs.probes]
    for sweep in sweeps:
        per_set = ood_sets(sweep.results["aggregate"])
        rows = [[sweep.label(r), f"{r['finished']}/{r['n']}", fmt_id_score(r), fmt_ci(r, "id_pass@k"), fmt_ci(r, "ood_avg@k"), *(fmt_ci(r, f"{name}/avg@k") for name in per_set),
                 fmt_ci(r, "id_tokens", 0), fmt_ci(r, "id_markers", 1), fmt_ci(r, "ood_tokens", 0), fmt(r.get("early_warning_step_mean"), 1)] for r in sweep.results["aggregate"]]
        base = sweep.results["aggregate"][0] if sweep.results["aggregate"] else {}
        parts.append(f"Sweep `{sweep.results['name']}` (`{sweep.where}`): final evaluation, mean [95% interval] over {', '.join(sweep.results['aggregate_over'])} "
                     f"(a group of one seed: the run's ID interval over problems in parentheses); "
                     f"base model at step 0 (the periodic evaluation, fewer samples): ID {fmt(base.get('base_id_avg@k_mean'))}, OOD {fmt(base.get('base_ood_avg@k_mean'))}.\n\n"
                     + markdown_table(["group", "cells done", "ID avg@k", "ID pass@k", "OOD avg@k", *map(ood_set_header, per_set), "ID tokens", "ID markers", "OOD tokens", "early-warning step"], rows))
        if sweep.results.get("selection"):
            parts.append(selection_markdown(sweep.results))
        if sweep.results.get("remedies"):
            note, _, rows = remedies_table(sweep.results)
            parts.append(f"Sweep `{sweep.results['name']}`: the remedies against their goal. {note}\n\n" + markdown_table(REMEDY_COLUMNS, rows))
        steps = periodic_steps(sweep.results["aggregate"])
        if len(steps) > 1:
            parts.append(f"Sweep `{sweep.results['name']}` at matched steps: the periodic evaluation (its own k and problems, fewer samples than the final one), mean over seeds.\n\n"
                         + matched_steps_table(sweep.results["aggregate"], steps, sweep.label))
    summary = method_summary(sweeps)
    if summary:
        parts.append("By method, over every sweep above (every finished run with the same ID set; conditions pooled, so not a matched comparison):\n\n"
                     + markdown_table(METHOD_COLUMNS, method_rows(summary)))
    return "\n\n".join(parts) + "\n"


REMEDY_MARGINS = ("length_margin", "id_margin", "ood_margin")
REMEDY_COLUMNS = ["remedy", "level", "rule", "rule score", "goal", "seeds", "length cut kept", "ID gain kept", "length margin (tokens)", "ID margin", "OOD - GRPO", "verdict"]


def remedy_verdict(row: dict[str, Any]) -> str:
    if row["met"] is None:
        return "n/a (no seed with every arm finished)"
    return ("met" + (" (every interval at or above 0)" if row["clearly"] else "")) if row["met"] else "not met"


def remedies_table(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[list[str]]]:
    """A remedies sweep's results (`collect_results`) as the report shows them: (the note stating
    the goal and the rule, one CSV record per knob level, the table's rows under `REMEDY_COLUMNS`)."""
    rule = results["remedies"]
    judged = judge_sweep(results["rows"], rule)
    flat = [{**{k: v for k, v in row.items() if k not in REMEDY_MARGINS},
             **{f"{name}_{part}": value for name in REMEDY_MARGINS for part, value in zip(("mean", "ci_low", "ci_high"), row.get(name) or (None,) * 3)}} for row in judged]
    rows = [[row["remedy"], row["level"], "chosen" if row["chosen"] else "", fmt(row["rule_score"]), fmt(row["variant"]), fmt(row["seeds"]),
             fmt(row.get("length_kept"), 2), fmt(row.get("id_gain_kept"), 2), fmt_ci(record, "length_margin", 1), fmt_ci(record, "id_margin"),
             fmt_ci(record, "ood_margin"), remedy_verdict(row)] for row, record in zip(judged, flat)]
    keep = f"{rule['keep']:.0%}"
    note = (f"Goal, fixed before the runs: keep at least {keep} of SDPO's ({rule['sdpo']}) length reduction and of its ID gain over the base "
            f"(step-0 evaluation), with OOD avg@k at least GRPO's ({rule['grpo']}); if SDPO's ID gain is not positive, keep {keep} of its length "
            "reduction with ID and OOD avg@k both at least GRPO's. Margins are per seed, then mean [95% interval] over seeds; a remedy meets the "
            "goal when every margin's mean is at least 0. Each remedy's verdict is its chosen level's: the highest mean over seeds of the mean of "
            f"{', '.join(rule['choose_by'])} (ties to the level listed first; never an OOD set)"
            + (f", on seed {', '.join(map(str, rule['screen_seeds']))} alone" if rule.get("screen_seeds") else "")
            + "; the other levels are shown for completeness.")
    return note, flat, rows

