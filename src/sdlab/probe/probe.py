"""The context-richness probe (the study's Table 1), the information gap, and the token heatmap.

    sdlab probe --model organism --data organism:arith:64 --contexts none,solution,solution_nothink,regenerated --out runs/probe

1. Selection: n unguided samples per problem; keep problems whose solve count is in `band`
   (study: 1 to 4 of 8), so a correct s exists and there is room to improve. s is one of the
   model's own correct samples, picked with the seed.
2. One fresh round of n samples per context (`none` is always run: it is the baseline and
   its samples are the student's rollouts; `regenerated` chains on the `solution` round). The
   selection samples are not reused for `none`: they were selected on, so their score would
   be pinned inside the band.
3. Scoring (`sdlab.probe.scoring`): H(y|x) and H(y|x,c) from each round's own samples, and the
   per-token divergence between student p(.|x, y<t) and teacher p(.|x, c, y<t) on the
   student's samples, split by epistemic-marker tokens (`sdlab.probe.gap`).

Output (written to a temporary directory renamed to `out` at the end, so a failed or
interrupted run leaves nothing half-written): probe.json, probe.md, samples.jsonl (every
sample, the selection round's as context "selection"), prompts.jsonl (every prompt as
rendered), heatmap.html, config.yaml, versions.json.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from sdlab import SdlabError
from sdlab.config.schema import ProbeConfig
from sdlab.core.contexts import ContextSpec, build_teacher_messages, context_text, cut_middle, parse_context_names
from sdlab.core.epistemic import count_markers, token_marker_occurrences
from sdlab.core.grading import grade_many
from sdlab.core.io import append_jsonl, write_json, write_run_header
from sdlab.evaluation.generation import Completion, SamplingParams, load_model_and_tokenizer, make_generator, render_prompt
from sdlab.probe.gap import divergence_split_by_problem, information_gap, mean_se
from sdlab.probe.heatmap import heatmap_rows, render_heatmap
from sdlab.probe.scoring import SamplingSpec, score_responses
from sdlab.probe.tables import format_tables

logger = logging.getLogger(__name__)
SOLUTION_KINDS = ("solution", "solution_nothink", "regenerated", "partial")  # contexts built from s


def context_plan(names: list[str]) -> list[ContextSpec]:
    """Requested contexts plus what they depend on, in run order: none first, solution before regenerated."""
    specs = parse_context_names(names)
    have = {s.name for s in specs}
    if "none" not in have:
        logger.info("adding context none: it is the baseline and the student's rollouts")
        specs.insert(0, parse_context_names("none")[0])
    if "regenerated" in have and "solution" not in have:
        logger.info("adding context solution: regenerated chains on its responses")
        specs.append(parse_context_names("solution")[0])
    rank = {"none": 0, "solution": 1}
    return sorted(specs, key=lambda s: rank.get(s.kind, 2))


def pick(options: list, *, seed: int, key: str):
    """Deterministic choice that depends on the seed and the key, not on iteration order."""
    return random.Random(f"{seed}:{key}").choice(options) if options else None


def regenerated_context(responses: list[dict]) -> str | None:
    """The study's y~ (and training's): the first correct of the responses given s, else the first."""
    return next((r["text"] for r in responses if r["correct"]), responses[0]["text"] if responses else None)


def solve_count_histogram(counts: list[int], n: int) -> dict[int, int]:
    tally = Counter(counts)
    return {k: tally.get(k, 0) for k in range(n + 1)}


def render(tokenizer, messages, *, enable_thinking) -> tuple[str, list[int]]:
    """Prompt text and its ids exactly as the generator tokenizes it (the template holds the special tokens)."""
    text = render_prompt(tokenizer, messages, enable_thinking=enable_thinking)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_teacher_prompt(tokenizer, messages, context: str, *, template: str, max_prompt_tokens: int, enable_thinking) -> tuple[str, list[int], bool]:
    """Teacher prompt within `max_prompt_tokens`: an over-long context loses its middle
    (`sdlab.core.contexts.cut_middle`, training's rule), never the question. Returns (text, ids, cut?)."""
    text, ids = render(tokenizer, build_teacher_messages(messages, context, template=template), enable_thinking=enable_thinking)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    keep = len(context_ids)
    while len(ids) > max_prompt_tokens:
        keep -= len(ids) - max_prompt_tokens
        try:
            shortened = cut_middle(context_ids, keep, tokenizer)
        except SdlabError:
            raise SdlabError(f"a teacher prompt leaves no room for its context within max_prompt_tokens={max_prompt_tokens}; raise it") from None
        text, ids = render(tokenizer, build_teacher_messages(messages, shortened, template=template), enable_thinking=enable_thinking)
    return text, ids, keep < len(context_ids)


def run_probe(config: ProbeConfig, *, force: bool = False) -> dict:
    """Run the probe end to end; returns the summary also written to `out/probe.json`.

    Everything checkable is checked before the first sample: output directory, context
    names, template, data, model directory and tokenizer, chat template."""
    from sdlab.core.data import load_problems

    start = time.time()
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise SdlabError(f"{out}: output directory exists and is not empty; pass --force to overwrite it")
    plan = context_plan(config.contexts)
    problems = load_problems(config.data, split=config.split)
    if not problems:
        raise SdlabError(f"{config.data}: no problems to probe")
    model, tokenizer = load_model_and_tokenizer(config.model, dtype=config.dtype, device=config.device)
    base = [render(tokenizer, p.messages, enable_thinking=config.enable_thinking) for p in problems]
    generator = make_generator(model, tokenizer, backend=config.backend, batch_size=config.batch_size, show_progress=True, gpu_memory_utilization=config.vllm_gpu_memory)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        needs_solution = any(s.kind in SOLUTION_KINDS for s in plan)
        selected, solutions, selection, selection_records = select_problems(config, problems, [text for text, _ in base], generator, needs_solution=needs_solution)
        chosen = [problems[i] for i in selected]
        rounds, prompts, truncated, shown = run_rounds(config, plan, chosen, [base[i] for i in selected], solutions, generator, tokenizer)
        summary = {"problems": selection, **analyse(config, plan, rounds, prompts, model, tokenizer, work / "heatmap.html")}
        if config.model_distribution_gap:
            for name, gap in model_distribution_gaps(config, plan, prompts, shown, chosen, generator, model, tokenizer).items():
                summary["contexts"][name]["model_distribution"] = gap
        for spec in plan:
            summary["contexts"][spec.name]["truncated_prompts"] = truncated[spec.name]
        for record in selection_records + [r for spec in plan for group in rounds[spec.name] for r in group]:
            append_jsonl(work / "samples.jsonl", record)
        for spec in plan:
            for problem, text in zip(chosen, shown[spec.name]):
                append_jsonl(work / "prompts.jsonl", {"problem_id": problem.id, "context": spec.name, "prompt": text})
        summary["wall_time_s"] = round(time.time() - start, 1)
        write_json(work / "probe.json", summary)
        (work / "probe.md").write_text(format_tables(summary) + "\n")
        write_run_header(work, config)
        work.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return summary


def params_for(config: ProbeConfig, *, seed: int) -> SamplingParams:
    return SamplingParams(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k, max_new_tokens=config.max_new_tokens, n=config.n, seed=seed)


def grade_groups(groups: list[list[Completion]], answers: list[str]) -> list[list[bool]]:
    verdicts = grade_many([c.text for g in groups for c in g], [a for a, g in zip(answers, groups) for _ in g])
    shaped, start = [], 0
    for group in groups:
        shaped.append(list(verdicts[start : start + len(group)]))
        start += len(group)
    return shaped


def select_problems(config: ProbeConfig, problems, prompt_texts: list[str], generator, *, needs_solution: bool) -> tuple[list[int], list[str | None], dict, list[dict]]:
    """Scan problems in chunks until `limit_problems` have an unguided solve count in the band.
    Returns (selected indices, their s, a summary, the selection samples' records).

    s is one of the model's own correct samples (`solution_source: own`, the study's choice) or
    the data's reference solution (`reference`); each falls back to the other, and a problem
    with neither is skipped when a context needs s."""
    lo, hi = config.band
    limit = config.limit_problems or len(problems)
    selected, solutions, counts, sources, records = [], [], [], Counter(), []
    for start in range(0, len(problems), limit):
        if len(selected) >= limit:
            break
        chunk = range(start, min(start + limit, len(problems)))
        groups = generator.generate([prompt_texts[i] for i in chunk], params_for(config, seed=config.seed + start))
        for i, group, verdicts in zip(chunk, groups, grade_groups(groups, [problems[i].answer for i in chunk])):
            records.extend(sample_records(problems[i].id, "selection", group, verdicts))
            correct = [c.text for c, ok in zip(group, verdicts) if ok]
            counts.append(len(correct))
            if not lo <= len(correct) <= hi or len(selected) >= limit:
                continue
            own = pick(correct, seed=config.seed, key=problems[i].id)
            reference = problems[i].solution
            prefer_own = config.solution_source == "own" and own is not None or reference is None
            solution, source = (own, "own") if prefer_own else (reference, "reference")
            if solution is None and needs_solution:
                sources["none: skipped"] += 1
                continue
            sources[source] += 1
            selected.append(i)
            solutions.append(solution)
    histogram = solve_count_histogram(counts, config.n)
    if not selected:
        shown = ", ".join(f"{k}/{config.n}: {v}" for k, v in histogram.items())
        skipped = f" ({sources['none: skipped']} in the band had no correct sample and no reference solution)" if sources else ""
        raise SdlabError(
            f"{config.data}: no problem has an unguided solve count in the band {lo} to {hi} of {config.n}{skipped}; "
            f"tried {len(counts)} problems, solve counts {shown}; widen --band or give more problems"
        )
    logger.info("selected %d of %d problems tried (solve counts %s)", len(selected), len(counts), histogram)
    return selected, solutions, {
        "tried": len(counts), "selected": len(selected), "band": [lo, hi],
        "solve_count_histogram": histogram, "solution_source": dict(sources),
    }, records


def run_rounds(config: ProbeConfig, plan, problems, base, solutions, generator, tokenizer):
    """One fresh round of n samples per context, in plan order. Returns per-context
    [problem][sample] records, prompt ids [problem], how many prompts had their context cut,
    and the prompt texts [problem] (written to prompts.jsonl to audit what the teacher saw)."""
    rounds: dict[str, list[list[dict]]] = {}
    prompts: dict[str, list[list[int]]] = {}
    truncated: dict[str, int] = {}
    shown: dict[str, list[str]] = {}
    for index, spec in enumerate(plan, start=1):
        if spec.kind == "none":
            fitted = [(text, ids, 0) for text, ids in base]
        else:
            regenerated = [None] * len(problems)
            if spec.kind == "regenerated":
                regenerated = [regenerated_context(group) for group in rounds["solution"]]
            texts = [context_text(spec, solution=s, answer=p.answer, regenerated=r) for p, s, r in zip(problems, solutions, regenerated)]
            fitted = [fit_teacher_prompt(tokenizer, p.messages, t, template=config.template, max_prompt_tokens=config.max_prompt_tokens, enable_thinking=config.enable_thinking) for p, t in zip(problems, texts)]
        truncated[spec.name] = sum(1 for *_, cut in fitted if cut)
        if truncated[spec.name]:
            logger.warning("context %s: %d teacher prompts over %d tokens had the middle of their context cut", spec.name, truncated[spec.name], config.max_prompt_tokens)
        prompts[spec.name] = [ids for _, ids, _ in fitted]
        shown[spec.name] = [text for text, _, _ in fitted]
        logger.info("round %d/%d: context %s", index, len(plan), spec.name)
        groups = generator.generate([text for text, _, _ in fitted], params_for(config, seed=config.seed + 1000 * index))
        rounds[spec.name] = [sample_records(p.id, spec.name, group, verdicts) for p, group, verdicts in zip(problems, groups, grade_groups(groups, [p.answer for p in problems]))]
    return rounds, prompts, truncated, shown


def sample_records(problem_id: str, context: str, group: list[Completion], verdicts: list[bool]) -> list[dict]:
    """One samples.jsonl row per completion (scoring adds `nll` and `nll_model`)."""
    return [
        {
            "problem_id": problem_id, "context": context, "sample": j, "text": c.text, "token_ids": c.token_ids,
            "num_tokens": c.num_tokens, "finished": c.finished, "correct": bool(ok),
            "markers_paper": count_markers(c.text, mode="paper"), "markers_word": count_markers(c.text, mode="word"),
        }
        for j, (c, ok) in enumerate(zip(group, verdicts))
    ]


SAMPLE_METRICS = {"score": "correct", "response_tokens": "num_tokens", "markers_paper": "markers_paper", "markers_word": "markers_word", "finished": "finished"}


def estimate(value: tuple[float, float]) -> dict[str, float]:
    return {"mean": value[0], "se": value[1]}


def per_problem(groups: list[list[dict]], key: str) -> list[float]:
    return [sum(float(r[key]) for r in group) / len(group) for group in groups]


def analyse(config: ProbeConfig, plan, rounds, prompts, model, tokenizer, heatmap_path: Path) -> dict:
    """Score every round, attach each sample's NLL, and summarise per context (see `sdlab.probe.gap`)."""
    from tqdm.auto import tqdm

    sampling = SamplingSpec(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k) if config.entropy_under == "sampling" else None
    teachers = [s.name for s in plan if s.kind != "none"]
    student = [r for group in rounds["none"] for r in group]
    owner = [i for i, group in enumerate(rounds["none"]) for _ in group]  # problem index of each student response
    total = len(student) * (1 + len(teachers)) + sum(len(group) for name in teachers for group in rounds[name])
    common = dict(pad_id=tokenizer.pad_token_id, sampling=sampling, alpha=config.alpha, batch_size=config.score_batch_size)
    with tqdm(total=total, desc="score", unit="pass") as bar:  # one unit = one response through one prompt
        scores = score_responses(
            model, prompts=[prompts["none"][i] for i in owner], responses=[r["token_ids"] for r in student],
            teacher_prompts=[[prompts[name][i] for i in owner] for name in teachers], progress=lambda n: bar.update(n * (1 + len(teachers))), **common,
        )
        attach_nll(student, scores)
        for name in teachers:
            own = [r for group in rounds[name] for r in group]
            own_owner = [i for i, group in enumerate(rounds[name]) for _ in group]
            attach_nll(own, score_responses(model, prompts=[prompts[name][i] for i in own_owner], responses=[r["token_ids"] for r in own], progress=bar.update, **common))
    occurrences = [torch.tensor(token_marker_occurrences(r["token_ids"], tokenizer), dtype=torch.long) for r in student]
    markers = [occurrence >= 0 for occurrence in occurrences]

    contexts = {}
    for spec in plan:
        groups = rounds[spec.name]
        entry = {name: estimate(mean_se(per_problem(groups, key))) for name, key in SAMPLE_METRICS.items()}
        gap = {key: estimate(value) for key, value in information_gap(nll_table(rounds["none"]), token_table(rounds["none"]), nll_table(groups), token_table(groups)).items()}
        if spec.kind == "none":
            entry.update(entropy=gap["entropy"], entropy_per_token=gap["entropy_per_token"])
        else:
            k = teachers.index(spec.name)
            entry.update(gap)
            entry["divergence"] = divergence_split_by_problem(
                regroup([s.divergence[k] for s in scores], owner), regroup(occurrences, owner), seed=config.seed
            )
        contexts[spec.name] = entry

    blocks = {name: heatmap_rows(student, scores, markers, teachers.index(name), tokenizer, limit=config.heatmap_responses) for name in teachers}
    heatmap_path.write_text(render_heatmap(blocks))
    divergence_name = {0.0: "forward KL(teacher || student)", 1.0: "reverse KL(student || teacher)"}.get(config.alpha, f"generalised JSD, alpha={config.alpha}")
    return {
        "contexts": contexts,
        "estimator": {
            "entropy_under": config.entropy_under, "units": "nats", "divergence": divergence_name,
            "sampler": {"temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p},
            "model_distribution": "fresh samples at temperature 1, no top-k/top-p, scored under the model" if config.model_distribution_gap else None,
            "divergence_on": "the student's (context none) samples, every token, full vocabulary, temperature 1",
        },
    }


def model_distribution_gaps(config: ProbeConfig, plan, prompts, shown, problems, generator, model, tokenizer) -> dict[str, dict]:
    """The information gap under the model's own distribution p (temperature 1, no truncation):
    a fresh round of n samples per context (the same teacher prompts) drawn from p and scored
    under p, so each entropy estimates p's, not the truncated sampler's (far lower)."""
    from sdlab.probe.scoring import score_responses

    own = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=config.max_new_tokens, n=config.n, seed=config.seed + 7919)
    nll, tokens = {}, {}
    for spec in plan:
        logger.info("model-distribution round: context %s", spec.name)
        groups = generator.generate(shown[spec.name], own)
        records = [c for group in groups for c in group]
        owner = [i for i, group in enumerate(groups) for _ in group]
        scores = score_responses(model, prompts=[prompts[spec.name][i] for i in owner], responses=[c.token_ids for c in records],
                                 pad_id=tokenizer.pad_token_id, batch_size=config.score_batch_size)
        nll[spec.name] = regroup([-float(score.logp.sum()) for score in scores], owner)
        tokens[spec.name] = regroup([c.num_tokens for c in records], owner)
    gaps = {}
    for spec in plan:
        gap = information_gap(nll["none"], tokens["none"], nll[spec.name], tokens[spec.name])
        gaps[spec.name] = {key: estimate(value) for key, value in gap.items()}
    return gaps


def attach_nll(records: list[dict], scores) -> None:
    """Sequence NLL (nats) under the sampling distribution when scored so, else the raw model."""
    for record, score in zip(records, scores):
        record["nll"] = -float((score.logq if score.logq is not None else score.logp).sum())
        record["nll_model"] = -float(score.logp.sum())


def nll_table(groups: list[list[dict]]) -> list[list[float]]:
    return [[r["nll"] for r in group] for group in groups]


def token_table(groups: list[list[dict]]) -> list[list[int]]:
    return [[r["num_tokens"] for r in group] for group in groups]


def regroup(items: list, owner: list[int]) -> list[list]:
    """Flat per-response items -> [problem][response]."""
    grouped: dict[int, list] = {}
    for item, problem in zip(items, owner):
        grouped.setdefault(problem, []).append(item)
    return [grouped[k] for k in sorted(grouped)]
