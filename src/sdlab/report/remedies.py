"""The remedies sweep judged against its goal, stated before any run (docs/remedies.md):

    keep at least `keep` (80%) of SDPO's length reduction and of its ID gain over the base,
    with OOD accuracy at least GRPO's; if SDPO's ID gain over the base is not positive, instead
    keep at least `keep` of its length reduction with ID and OOD accuracy both at least GRPO's.

Each condition is a margin computed per seed (seeds pair the arms: one seed, one data order, one
base evaluation) and averaged over seeds with its Student-t 95% interval; a remedy meets the goal
when every margin's mean is at least 0, and meets it clearly when every interval lies at or above 0.
Pure Python on numbers (no torch): the report and its tests call it on result rows.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from sdlab.core.stats import mean_and_ci95

KEEP_GAIN, MATCH_GRPO = "keep SDPO's ID gain", "match GRPO's ID"  # the goal's two variants
Scores = dict[Any, dict[str, float]]  # seed -> {"id": ID avg@k, "ood": OOD avg@k, "tokens": ID response tokens}


def _interval(values: list[float]) -> tuple[float, float | None, float | None]:
    mean, low, high = mean_and_ci95(values)
    return mean, (None if low != low else low), (None if high != high else high)


def _share(part: list[float], whole: list[float]) -> float | None:
    """How much of `whole` (SDPO's reduction or gain, mean over seeds) `part` keeps; None when SDPO has none."""
    return fmean(part) / fmean(whole) if fmean(whole) > 0 else None


def judge_remedy(remedy: Scores, *, sdpo: Scores, grpo: Scores, base: dict[Any, dict[str, float]], keep: float = 0.8) -> dict[str, Any]:
    """One remedy against the goal (module docstring), on the seeds every arm and the base have.

    `base` holds each seed's base-model scores ("id", "tokens"). Returns the goal variant, the
    seeds used, the shares of SDPO's length reduction and ID gain kept, each margin as (mean,
    low, high), `met` and `clearly`."""
    seeds = sorted(set(remedy) & set(sdpo) & set(grpo) & set(base), key=str)
    if not seeds:
        return {"variant": None, "seeds": 0, "met": None, "clearly": None}
    sdpo_cut = [base[s]["tokens"] - sdpo[s]["tokens"] for s in seeds]
    remedy_cut = [base[s]["tokens"] - remedy[s]["tokens"] for s in seeds]
    sdpo_gain = [sdpo[s]["id"] - base[s]["id"] for s in seeds]
    remedy_gain = [remedy[s]["id"] - base[s]["id"] for s in seeds]
    variant = KEEP_GAIN if fmean(sdpo_gain) > 0 else MATCH_GRPO
    margins = {
        "length_margin": [r - keep * s for r, s in zip(remedy_cut, sdpo_cut)],  # tokens cut beyond keep x SDPO's cut
        "id_margin": [r - keep * s for r, s in zip(remedy_gain, sdpo_gain)] if variant == KEEP_GAIN else [remedy[s]["id"] - grpo[s]["id"] for s in seeds],
        "ood_margin": [remedy[s]["ood"] - grpo[s]["ood"] for s in seeds],
    }
    judged = {name: _interval(values) for name, values in margins.items()}
    return {
        "variant": variant,
        "seeds": len(seeds),
        "length_kept": _share(remedy_cut, sdpo_cut),
        "id_gain_kept": _share(remedy_gain, sdpo_gain),
        **judged,
        "met": all(mean >= 0 for mean, _, _ in judged.values()),
        "clearly": all(low is not None and low >= 0 for _, low, _ in judged.values()),
    }


def scores_by_arm(rows: list[dict[str, Any]], *, axis: str) -> tuple[dict[str, Scores], dict[Any, dict[str, float]]]:
    """Finished result rows (results.csv's) -> ({level of `axis`: {seed: scores}}, {seed: base
    scores}). The base is each seed's step-0 evaluation, averaged over that seed's cells (the
    same model evaluated with the same sampling seed)."""
    arms: dict[str, Scores] = {}
    base: dict[Any, dict[str, list[float]]] = {}
    for row in rows:
        values = (row.get("id_avg@k"), row.get("ood_avg@k"), row.get("id_tokens"))
        if row.get("status") != "done" or any(v is None for v in values):
            continue
        arms.setdefault(row[axis], {})[row.get("seed")] = dict(zip(("id", "ood", "tokens"), values))
        if row.get("base_id_avg@k") is not None and row.get("base_id_tokens") is not None:
            seed = base.setdefault(row.get("seed"), {"id": [], "tokens": []})
            seed["id"].append(row["base_id_avg@k"])
            seed["tokens"].append(row["base_id_tokens"])
    return arms, {seed: {key: fmean(values) for key, values in scores.items()} for seed, scores in base.items()}


def choose_knobs(rows: list[dict[str, Any]], *, axis: str, knobs: dict[str, list[str]], choose_by: list[str], screen_seeds: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """Per remedy, the knob level its rule chooses: the highest mean over seeds of the mean of the
    `choose_by` columns, ties to the earlier listed, only once all the remedy's cells have finished
    (`sdlab.experiments.results.select_levels`); with `screen_seeds`, those seeds' cells alone
    choose. {remedy: {"scores": {level: score}, "finished", "chosen"}}."""
    from sdlab.experiments.results import is_number, select_levels

    screened = None if screen_seeds is None else {str(seed) for seed in screen_seeds}
    out = {}
    for remedy, levels in knobs.items():
        scored = []
        for row in rows:
            if row.get(axis) in levels and (screened is None or str(row.get("seed")) in screened):
                values = [row.get(column) for column in choose_by]
                score = fmean(values) if all(is_number(v) for v in values) else None
                scored.append({**row, "knob_index": levels.index(row[axis]), "rule_score": score})
        [choice] = select_levels(scored, axis="knob_index", per=[], metric="rule_score") or [{"scores": {}, "finished": "0/0", "knob_index": None}]
        out[remedy] = {"scores": {levels[int(index)]: score for index, score in choice["scores"].items()}, "finished": choice["finished"],
                       "chosen": None if choice["knob_index"] is None else levels[int(choice["knob_index"])]}
    return out


def judge_sweep(rows: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Every knob level of every remedy judged (a `RemediesConfig` as `rule`), marking the level
    its remedy's rule chose: one row each, the chosen level's verdict being the remedy's."""
    arms, base = scores_by_arm(rows, axis=rule["axis"])
    choices = choose_knobs(rows, axis=rule["axis"], knobs=rule["knobs"], choose_by=rule["choose_by"], screen_seeds=rule.get("screen_seeds"))
    out = []
    for remedy, levels in rule["knobs"].items():
        for level in levels:
            verdict = judge_remedy(arms.get(level, {}), sdpo=arms.get(rule["sdpo"], {}), grpo=arms.get(rule["grpo"], {}), base=base, keep=rule["keep"])
            out.append({"remedy": remedy, "level": level, "chosen": choices[remedy]["chosen"] == level,
                        "rule_score": choices[remedy]["scores"].get(level), "rule_finished": choices[remedy]["finished"], **verdict})
    return out

