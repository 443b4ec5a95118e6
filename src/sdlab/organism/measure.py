"""Measure what a built organism can do: the table in its model card and docs/organism.md.

    sdlab organism measure organism --n 64 --out abilities.json

Rows are (family, context): accuracy, response tokens, markers, first-candidate accuracy,
recovery share, candidates tried, check accuracy, all from `instruments`. Contexts are
built by `sdlab.core.contexts` (the study's template), exactly as the probe and training build them.
`copy_probe` says where the checks' copies come from (the question, or a check above).
`distance_probe` says how far back the model can be given context (its trained window).
`STRATEGY_ROWS` and `doubt_probe` measure corpus version 11's design: the derivation when asked
for it, the teacher's reply to a regenerated or a wrong solution, the narrow reply to a context,
and the teacher's doubt after a failed check in the student's own responses (`gates` judges them).
`mechanics_of_evaluation` reads the same instruments off an evaluation's saved samples.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
import yaml

from sdlab import SdlabError
from sdlab.core.contexts import build_teacher_messages, context_text, parse_context_name
from sdlab.core.data import dataset_name
from sdlab.core.grading import extract_answer
from sdlab.core.io import read_jsonl
from sdlab.evaluation.generation import SamplingParams, make_generator, render_prompt
from sdlab.organism.instruments import analyze_response, doubt_places, slot_prefixes, summarize, task_of
from sdlab.organism.problems import load_organism_problems

logger = logging.getLogger(__name__)

NO_CONTEXT_FAMILIES = ("linmod-eval", "linmod-bare", "linmod-hard", "sqmod", "narrow-eval", "check-eval")
CONTEXTS = ("solution", "solution_nothink", "partial:0.5", "partial:0.25", "hint")
# Corpus version 11's rows: `derive` asks for the derivation (the response is begun with
# DERIVE_PREFIX, so its accuracy is measured on every problem, not on the few that choose it);
# `regenerated` gives the model's own reply to the solution (the row `solution`, measured
# first) as the context; `wrong_solution` a solution that "verifies" a wrong answer.
STRATEGY_ROWS = (("linmod-eval", "derive"), ("linmod-hard", "derive"), ("linmod-eval", "regenerated"), ("linmod-eval", "wrong_solution"), ("narrow-eval", "solution"))
DERIVE_PREFIX = "<think>\ndirectly: "


def ability_row(family: str, context: str, texts: list[str], problems: list, num_tokens: list[int]) -> dict:
    """One row of the abilities table: the instruments' rates over responses to these problems."""
    summary = summarize([analyze_response(text, problem) for text, problem in zip(texts, problems)], num_tokens)
    return {"family": family, "context": context, **{k: round(v, 3) for k, v in summary.items()}}


def row_prompts(tokenizer, family: str, context: str, problems: list, samples: dict) -> tuple[list, list, str]:
    """The prompts of one row, their contexts and the text its responses were begun with (`derive`)."""
    from sdlab.organism.corpus import wrong_solution

    if context == "derive":
        return [render_prompt(tokenizer, p.messages) + DERIVE_PREFIX for p in problems], [None] * len(problems), DERIVE_PREFIX
    if context == "wrong_solution":
        contexts = [wrong_solution(task_of(p), random.Random(p.id)) for p in problems]
    elif context == "regenerated":
        if (family, "solution") not in samples:
            raise SdlabError(f"row ({family}, regenerated) needs the row ({family}, solution) measured before it")
        contexts = samples[(family, "solution")]
    else:
        spec = parse_context_name(context)
        contexts = [context_text(spec, solution=p.solution, answer=p.answer) for p in problems]
    return [build_teacher_messages(p.messages, c) for p, c in zip(problems, contexts)], contexts, ""


def measure_rows(model, tokenizer, rows: list[tuple[str, str]], *, n: int, seed: int = 0, temperature: float = 0.6, max_new_tokens: int = 512, batch_size: int = 32, show_progress: bool = False, samples: dict | None = None) -> list[dict]:
    """Sample one response per problem for each (family, context) row and summarise it; each
    row's responses are kept in `samples[(family, context)]`."""
    generator = make_generator(model, tokenizer, backend="transformers", batch_size=batch_size, show_progress=show_progress)
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, n=1, seed=seed)
    samples = {} if samples is None else samples
    results = []
    for family, context in rows:
        problems = load_organism_problems(f"organism:{family}:{n}:{seed}")
        prompts, contexts, prefix = row_prompts(tokenizer, family, context, problems, samples)
        completions = [group[0] for group in generator.generate(prompts, params)]
        texts = [prefix + c.text for c in completions]
        samples[(family, context)] = texts
        results.append(ability_row(family, context, texts, problems, [c.num_tokens for c in completions]))
        if context == "wrong_solution":  # how often the reply takes the context's wrong answer
            followed = [extract_answer(t) == extract_answer(c) for t, c in zip(texts, contexts)]
            results[-1]["followed_context"] = round(sum(followed) / max(1, len(followed)), 3)
        logger.info("%s / %s: %s", family, context, results[-1])
    return results



def measure_abilities(model, tokenizer, *, seed: int = 0, n: int = 64, temperature: float = 0.6, quick: bool = False, show_progress: bool = False, strategies: bool = False, samples: dict | None = None) -> list[dict]:
    """The standard table: every family without context, and the ID family with each context;
    with `strategies`, corpus version 11's rows too (`STRATEGY_ROWS`)."""
    rows = [(family, "none") for family in NO_CONTEXT_FAMILIES] + [("linmod-eval", c) for c in CONTEXTS] + (list(STRATEGY_ROWS) if strategies else [])
    if quick:  # a smoke run for tiny test builds: the pipeline, not the numbers
        rows = rows[:2] + (list(STRATEGY_ROWS[:1]) if strategies else [])
        return measure_rows(model, tokenizer, rows, n=2, seed=seed, max_new_tokens=16, samples=samples)
    return measure_rows(model, tokenizer, rows, n=n, seed=seed, temperature=temperature, show_progress=show_progress, samples=samples)


# What every experiment relies on the organism for, as (family, context, column, minimum, what
# it is). The copy after a context is the ability that failed most across builds: a draw's
# weights depend on the CPU and the step precision (docs/measurements.md#organism), and one
# that lacks it searches with broken checks after a think-less solution or a bare answer, so
# the probe's no-think row and any SDPO teacher without a full solution read noise.
REQUIRED_ABILITIES = (
    ("linmod-eval", "none", "check_lookups_right", 0.9, "the lookup facts of a check"),
    ("linmod-eval", "none", "check_copies_right", 0.8, "the copy of the question's equation into a check"),
    ("linmod-eval", "none", "check_comparisons_right", 0.95, "the comparison of a check's value with its target"),
    ("linmod-eval", "none", "accuracy", 0.1, "solving in-distribution problems without a context"),
    ("linmod-eval", "solution", "accuracy", 0.9, "use of a full solution in context"),
    ("linmod-eval", "solution_nothink", "check_copies_right", 0.8, "the copy of the equation after a think-less solution"),
    ("linmod-eval", "hint", "check_copies_right", 0.8, "the copy of the equation after a bare answer"),
)


def missing_abilities(rows: list[dict]) -> list[str]:
    """The required abilities that measured rows show below their minimum, as sentences; rows
    not measured are not judged (a quick build measures two)."""
    measured = {(row["family"], row["context"]): row for row in rows}
    missing = []
    for family, context, column, minimum, ability in REQUIRED_ABILITIES:
        row = measured.get((family, context))
        if row is not None and row.get(column, 0.0) < minimum:
            missing.append(f"{ability}: {column} {row.get(column, 0.0):.2f} on {family} / {context} (needs {minimum})")
    return missing


def mechanics_of_evaluation(eval_dir: str | Path) -> list[dict]:
    """The instruments applied to an evaluation's saved samples (`sdlab eval`, or a run's
    `final_eval`), no new sampling: whether a trained model stopped searching (fewer
    candidates, more give-ups) or forgot how to verify (checks wrong). Non-organism data sets
    are skipped: the instruments read the organism's check format only."""
    eval_dir = Path(eval_dir)
    config_path = eval_dir / "config.yaml"
    if not config_path.is_file():
        raise SdlabError(f"{eval_dir}: no config.yaml; give an `sdlab eval` directory or a run's final_eval directory")
    rows = []
    for source in yaml.safe_load(config_path.read_text()).get("data", []):
        samples_path = eval_dir / f"samples_{dataset_name(source)}.jsonl"
        if not str(source).startswith("organism:") or not samples_path.is_file():
            continue
        problems = {p.id: p for p in load_organism_problems(str(source))}
        samples = read_jsonl(samples_path)
        unknown = sorted({s["problem_id"] for s in samples} - problems.keys())
        if unknown:
            raise SdlabError(f"{samples_path}: problem ids {unknown[:3]} are not in {source}; was the file written for another data set?")
        rows.append(ability_row(str(source).split(":")[1], "none", [s["text"] for s in samples], [problems[s["problem_id"]] for s in samples], [s["num_tokens"] for s in samples]))
    return rows


DISTANCES = (0, 128, 256, 384, 512)


@torch.no_grad()
def distance_probe(model, tokenizer, *, n: int = 16, seed: int = 0, distances: tuple[int, ...] = DISTANCES) -> dict[int, float]:
    """Mean next-token loss (nats per token) of the same corpus responses with whole unrelated
    chats placed before them, at least `distance` tokens of them.

    RoPE attention sees only distances, so this says how far back the model can read: the v6
    organism, pretrained on 256-token windows alone, rose from 0.09 to 1.95 nats at 512 tokens,
    and an SDPO teacher's solution context reaches ~700 back (docs/organism.md#window)."""
    from sdlab.organism.corpus import corpus_documents
    from sdlab.organism.tokenizer import render_chat

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    chats = [d for d in corpus_documents(8 * n, seed=seed + 1) if "messages" in d]
    fillers = [encode(render_chat(tokenizer, d["messages"], d["response"])) for d in chats[n:]]
    targets = [(len(encode(render_chat(tokenizer, d["messages"]))), encode(render_chat(tokenizer, d["messages"], d["response"]))) for d in chats[:n]]
    losses = {}
    for distance in distances:
        total, count = 0.0, 0
        for i, (prompt_length, full) in enumerate(targets):
            prefix, j = [], i
            while len(prefix) < distance:  # whole chats only: a window never starts mid-chat here
                prefix, j = prefix + fillers[j % len(fillers)], j + 1
            ids = torch.tensor([prefix + full], device=model.device)
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            start = len(prefix) + prompt_length - 1  # the logit that predicts the response's first token
            total -= logprobs[start:].gather(1, ids[0, start + 1:, None]).sum().item()
            count += ids.shape[1] - 1 - start
        losses[distance] = total / count
    return losses


@torch.no_grad()
def copy_probe(model, tokenizer, *, n: int = 32, seed: int = 0, candidate: int = 3) -> dict[str, dict[str, float]]:
    """Mean teacher-forced probability of the question's own coefficient, addend and target at
    their slots in a check of `candidate`, written as the response's first check and as its
    second (after a full, correct check of another candidate).

    A model that copies from the question scores alike in both; one that only repeats the
    check above it (the default organism: 0.13 vs 1.00 for the coefficient) does not, which
    tells "cannot copy" from "does not know the format" (docs/measurements.md#organism)."""
    from sdlab.organism.corpus import chain

    scores: dict[str, dict[str, list[float]]] = {"first_check": {}, "second_check": {}}
    for problem in load_organism_problems(f"organism:linmod-eval:{n}:{seed}"):
        task = task_of(problem)
        x = candidate % task.p
        prompt = tokenizer.apply_chat_template(problem.messages, tokenize=False, add_generation_prompt=True) + "<think>\n"
        before = {"first_check": "try ", "second_check": f"try {chain(task, (x + 1) % task.p)}\nhmm, no. try "}
        for position, lead in before.items():
            for slot, prefix in slot_prefixes(chain(task, x)).items():
                ids = tokenizer(prompt + lead + prefix, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
                probs = torch.softmax(model(ids).logits[0, -1].float(), dim=-1)
                number = {"a": task.a, "b": task.b, "c": task.c}[slot]
                scores[position].setdefault(slot, []).append(probs[tokenizer.convert_tokens_to_ids(str(number))].item())
    return {position: {slot: sum(v) / len(v) for slot, v in slots.items()} for position, slots in scores.items()}


def opening_ids(tokenizer) -> tuple[list[int], int]:
    """The ids that open a line after a failed check: each doubt phrase's (and the give-up's),
    and the derivation's. Tokenized in place, since a phrase alone can merge into other tokens
    than it does before the rest of its line."""
    from sdlab.organism.corpus import DOUBTS, LEADS
    from sdlab.organism.derivation import derivation_line
    from sdlab.organism.tasks import Task

    def first_token(line: str) -> int:
        encoded = tokenizer(f"no.\n{line}", add_special_tokens=False, return_offsets_mapping=True)
        return next(i for i, (start, _) in zip(encoded["input_ids"], encoded["offset_mapping"]) if start == 4)

    doubts = {first_token(f"{phrase} {lead}x=1: ") for phrase in DOUBTS for lead in LEADS} | {first_token("hmm, too many tries. it might be x=1.")}
    return sorted(doubts), first_token(derivation_line(Task("linmod", 7, 4, 2, 5)))


FAILED_CHECK_LABELS = ("first", "second", "later")  # the doubt probe's split: which failed check of its response a place follows


@torch.no_grad()
def doubt_probe(model, tokenizer, texts: list[str], problems: list) -> dict[str, float]:
    """The probability of doubt after a failed check, in the student's own responses, read by the
    student (no context) and by the teacher (the problem's solution in the study's template).

    At each line that follows a failed check and opens with a marker (`instruments.doubt_places`):
    the probability of the token the student wrote there (`*_written`), the mass on the first
    tokens of every doubt phrase (`*_doubt_mass`) and on the derivation's first token
    (`*_derivation`). A teacher that knows the answer puts little mass on doubt there; corpus
    version 10's put as much as the student (0.189 against 0.193).

    `by_failed_check` splits the same numbers by which failed check of its response a place
    follows (the first, the second, a later one): version 11's teacher stops doubting after the
    first (0.18 of the student's) and not after the third, where a response that already doubted
    twice no longer resembles any reply it was trained to write."""
    doubt_ids, derive_id = opening_ids(tokenizer)
    keys = [f"{role}_{what}" for role in ("student", "teacher") for what in ("written", "doubt_mass", "derivation")]
    sums = {label: dict.fromkeys(keys, 0.0) for label in FAILED_CHECK_LABELS}
    places = dict.fromkeys(FAILED_CHECK_LABELS, 0)
    responses = 0
    for text, problem in zip(texts, problems):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = {start: i for i, (start, _) in enumerate(encoded["offset_mapping"])}
        found = [starts[place] for place in doubt_places(text, problem) if place in starts and starts[place] > 0]
        if not found:
            continue
        responses += 1
        labels = [FAILED_CHECK_LABELS[min(order, len(FAILED_CHECK_LABELS) - 1)] for order in range(len(found))]
        for label in labels:
            places[label] += 1
        ids = encoded["input_ids"]
        for role, context in (("student", None), ("teacher", problem.solution)):
            prompt = tokenizer(render_prompt(tokenizer, build_teacher_messages(problem.messages, context)), add_special_tokens=False)["input_ids"]
            probs = torch.softmax(model(torch.tensor([prompt + ids], device=model.device)).logits[0].float(), dim=-1)
            for label, i in zip(labels, found):
                row = probs[len(prompt) + i - 1]  # the logits that predict token i of the response
                for what, value in (("written", row[ids[i]]), ("doubt_mass", row[doubt_ids].sum()), ("derivation", row[derive_id])):
                    sums[label][f"{role}_{what}"] += value.item()
    total = {key: sum(split[key] for split in sums.values()) for key in keys}
    return {**mean_doubts(total, sum(places.values())), "responses": responses, "by_failed_check": {label: mean_doubts(sums[label], places[label]) for label in FAILED_CHECK_LABELS}}


def mean_doubts(sums: dict[str, float], places: int) -> dict[str, float]:
    """Sums over `places` -> means, the place count and the teacher/student ratio of the doubt written."""
    means = {key: value / max(1, places) for key, value in sums.items()}
    return {**means, "places": places, "ratio_written": means["teacher_written"] / means["student_written"] if means["student_written"] else float("nan")}
