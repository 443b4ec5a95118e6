"""The organism's pretraining corpus: chat traces that search, check and revise.

What is designed in here is the organism's *starting* behaviour, and only that:

* unguided traces propose a candidate, check it with a short chain of small modular
  lookups (`x=3 (mod 7): 4*3=5, 5+9=0. 0!=5.`), and on a failed check verbalise doubt with the
  study's markers and revise to the next candidate; some traces give up after a budget
  with a hedged guess, so accuracy starts imperfect;
* context-conditioned traces read a context (a correct solution, the same without its think
  block, its first fraction, a bare `\\boxed{}` answer) and use what it *reveals*: a
  verified candidate is trusted (no check, no markers), a claimed answer is checked (with
  more doubt the less the context shows), a partial search is continued where it stopped.
  The behaviour depends on the context's content, never on its wrapper, so every teacher
  prompt sdlab builds (the study's template, TRL's SDPO reprompt) is in distribution.

Nothing here knows which algorithm will train the organism later.
"""

from __future__ import annotations

import random
import re

from sdlab.grading import remove_think
from sdlab.organism.tasks import ID_PRIMES, Task, brute_force_answer, lhs

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STUDY_TEMPLATE = "{question}\n\nCorrect solution: {solution}\n\nCorrectly solve the original question."
# TRL 1.16 SDPOConfig defaults (reprompt_template, solution_template), with no feedback.
TRL_REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
TRL_SOLUTION_TEMPLATE = "\nCorrect solution:\n\n{successful_previous_attempt}\n\n"

DOUBTS = ("wait, that fails.", "hmm, no.", "wait, wrong.", "actually, that fails.", "hmm, that seems wrong.")
LEADS = ("perhaps ", "maybe ", "try ", "alternatively, ", "let me check ")
INTUITION = 0.2  # the chance that the first guess is right (the writer "knows" the answer)
BUDGET = (3, 9)  # failed candidates tolerated before giving up, uniform in this range

# x, modulus, lookups, value, verdict, target
CHAIN = re.compile(r"x=(\d+) \(mod (\d+)\): ((?:\d+\*\d+=\d+, \d+\+\d+=\d+(?:, )?)+)\. (\d+)(!=|=)(\d+)\.")
BOXED = re.compile(r"\\boxed\{(\d+)\}")
CLAIM = re.compile(r"(?:might be x=|says x=|shows x=)(\d+)")
JUSTIFIED = re.compile(r"x = \d+ gives|(?:says|shows) x=\d+")


def lookups(p: int, factor: int, value: int, addend: int) -> tuple[str, int]:
    """`factor*value=r, r+addend=s` with every result reduced mod p: one product, one sum."""
    product = factor * value % p
    total = (product + addend) % p
    return f"{factor}*{value}={product}, {product}+{addend}={total}", total


def chain(task: Task, x: int) -> str:
    """The check of candidate `x`: `x=3 (mod 7): 4*3=5, 5+9=0. 0!=5.` (f(f(x)) twice the lookups)."""
    steps, value = [], x
    for _ in range(2 if task.kind == "linmod2" else 1):
        text, value = lookups(task.p, value if task.kind == "sqmod" else task.a, value, task.b)
        steps.append(text)
    verdict = f"{value}={task.c}." if value == task.c else f"{value}!={task.c}."
    return f"x={x} (mod {task.p}): {', '.join(steps)}. {verdict}"


def final_text(task: Task, x: int, *, verified: bool) -> str:
    """What follows the think block: a one-line justification and the boxed answer."""
    if not verified:
        return f"The answer might be \\boxed{{{x}}}."
    if task.kind == "linmod2":
        return f"x = {x} gives f(f({x})) = {task.c}. The answer is \\boxed{{{x}}}."
    shape = f"{x}*{x}" if task.kind == "sqmod" else f"{task.a}*{x}"
    return f"x = {x} gives ({shape} + {task.b}) mod {task.p} = {task.c}. The answer is \\boxed{{{x}}}."


def response(think_lines: list[str], answer: str) -> str:
    return f"{THINK_OPEN}\n" + "\n".join(think_lines) + f"\n{THINK_CLOSE}\n\n{answer}"


def search_lines(task: Task, start: int, rng: random.Random, *, budget: int | None, first_lead: str = "try ", skip: frozenset[int] = frozenset()) -> tuple[list[str], int, bool]:
    """Sequential search from `start` (cyclic, skipping `skip`): (lines, final x, verified).

    sqmod asks for the smallest solution, so its search always starts at 0 and goes up."""
    order = [(start + i) % task.p for i in range(task.p)]
    order = [x for x in order if x not in skip] or order
    lines, lead, failures = [], first_lead, 0
    for x in order:
        text = f"{lead}{chain(task, x)}"
        if lhs(task, x) == task.c:
            lines.append(f"{text} it works.")
            return lines, x, True
        lines.append(text)
        failures += 1
        if budget is not None and failures > budget:
            tried = set(order[: order.index(x) + 1]) | skip
            guess = rng.choice([y for y in range(task.p) if y not in tried] or list(range(task.p)))
            lines.append(f"hmm, too many tries. it might be x={guess}.")
            return lines, guess, False
        lead = f"{rng.choice(DOUBTS)} {rng.choice(LEADS)}"
    raise ValueError(f"{task.key}: no candidate in {order} satisfies the equation")


def first_guess(task: Task, rng: random.Random) -> int:
    """The writer's intuition: right with probability INTUITION, else a random wrong candidate."""
    if task.kind == "sqmod":
        return 0
    answer = brute_force_answer(task)
    if rng.random() < INTUITION:
        return answer
    return rng.choice([x for x in range(task.p) if x != answer])


def narrow_chain(task: Task) -> str:
    return f"(mod {task.p}): {lookups(task.p, task.a, task.b, task.c)[0]}."


def narrow_final(task: Task) -> str:
    return f"({task.a}*{task.b} + {task.c}) mod {task.p} = {brute_force_answer(task)}. The answer is \\boxed{{{brute_force_answer(task)}}}."


def check_final(task: Task) -> str:
    verdict = brute_force_answer(task)
    return f"x = {task.x} {'works' if verdict else 'fails'}. The answer is \\boxed{{{verdict}}}."


def unguided_response(task: Task, rng: random.Random, *, give_up: bool = True) -> str:
    """A response without context. `give_up=False` searches until the answer is found."""
    if task.kind == "narrow":
        lines = [narrow_chain(task)]
        if rng.random() < 0.5:  # a habitual, unneeded re-check: room for compression
            lines.append(f"wait, let me check again {narrow_chain(task)} yes.")
        return response(lines, narrow_final(task))
    if task.kind == "check":
        return response([f"try {chain(task, task.x)}"], check_final(task))
    budget = rng.randint(*BUDGET) if give_up else None
    lines, x, verified = search_lines(task, first_guess(task, rng), rng, budget=budget)
    return response(lines, final_text(task, x, verified=verified))


def reference_solution(task: Task) -> str:
    """The problem's correct solution (a full trace, think block included), fixed by its key."""
    return unguided_response(task, random.Random(task.key), give_up=False)


def read_context(text: str) -> tuple[int | None, int | None, list[int], bool]:
    """What a context reveals: (verified x, claimed x, failed candidates in order, claim justified).

    A verified x has a complete passing check; a claimed x is a boxed answer or a hedged
    "might be x=K"; "justified" means the claim comes with its equation (a think-less solution)."""
    verified, failed = None, []
    for match in CHAIN.finditer(text):
        if match[5] == "=":
            verified = int(match[1])
        else:
            failed.append(int(match[1]))
    claims = BOXED.findall(text) or CLAIM.findall(text)
    claimed = int(claims[-1]) if claims else None
    return verified, claimed, failed, bool(JUSTIFIED.search(text))


def guided_response(task: Task, context: str, rng: random.Random) -> str:
    """A response given a context: trust what is verified, check what is claimed (with more
    doubt the less is shown), continue a partial search where it stopped."""
    verified, claimed, failed, justified = read_context(context)
    if task.kind in ("narrow", "check"):
        if claimed is not None:
            final = narrow_final(task) if task.kind == "narrow" else check_final(task)
            return response([f"the solution gives {claimed}."], final)
        return unguided_response(task, rng)
    if verified is not None:
        return response([f"the solution shows x={verified} works."], final_text(task, verified, verified=True))
    budget = rng.randint(*BUDGET)
    if claimed is not None:
        intro = f"the solution says x={claimed}. let me verify." if justified else f"the answer might be x={claimed}. let me check."
        lines, x, ok = search_lines(task, claimed, rng, budget=budget, first_lead="")
        return response([intro] + lines, final_text(task, x, verified=ok))
    if failed:
        start = (failed[-1] + 1) % task.p
        lines, x, ok = search_lines(task, start, rng, budget=budget, first_lead=rng.choice(LEADS), skip=frozenset(failed))
        return response([f"the solution tried up to x={failed[-1]}, which fails."] + lines, final_text(task, x, verified=ok))
    return unguided_response(task, rng)


CONTEXT_KINDS = ("solution", "solution_nothink", "partial", "hint", "wrong_hint")
CONTEXT_WEIGHTS = (0.25, 0.2, 0.35, 0.15, 0.05)


def context_for(task: Task, kind: str, rng: random.Random) -> str:
    """A context text of `kind`, built from the organism's own typical responses: an
    unguided correct trace (or, one time in five, a guided one, like a regenerated context)."""
    answer = brute_force_answer(task)
    if kind == "hint":
        return f"\\boxed{{{answer}}}"
    if kind == "wrong_hint":
        return f"\\boxed{{{rng.choice([x for x in range(max(task.p, 2)) if x != answer])}}}"
    source = unguided_response(task, rng, give_up=False)
    if rng.random() < 0.2:
        source = guided_response(task, source, rng)
    if kind == "solution":
        return source
    if kind == "solution_nothink":
        return remove_think(source)
    return source[: max(1, round(rng.uniform(0.05, 0.95) * len(source)))]


def wrap_context(question: str, context: str, *, trl: bool) -> str:
    """The teacher prompt's user message: the study's template or TRL's SDPO reprompt."""
    if trl:
        solution = TRL_SOLUTION_TEMPLATE.format(successful_previous_attempt=context)
        return TRL_REPROMPT_TEMPLATE.format(prompt=question, solution=solution, feedback="")
    return STUDY_TEMPLATE.format(question=question, solution=context)


def drill_text(rng: random.Random, *, n_facts: int = 12) -> str:
    """Arithmetic-fact lines (general pretraining, no task): uniformly drawn modular lookups,
    so facts that checks need but rarely meet in the traces are still seen."""
    facts = []
    for _ in range(n_facts):
        p = rng.choice(ID_PRIMES)
        facts.append(f"(mod {p}): {lookups(p, rng.randrange(p), rng.randrange(p), rng.randrange(p))[0]}.")
    return "\n".join(facts)


DOC_KINDS = ("linmod", "linmod_context", "narrow", "narrow_context", "check", "drill")
DOC_WEIGHTS = (0.42, 0.25, 0.08, 0.02, 0.06, 0.17)


def corpus_documents(n_docs: int, *, seed: int) -> list[dict]:
    """`n_docs` training documents from the `pretrain` splits only: chat documents
    {"kind", "messages", "response"} and plain-text drills {"kind", "text"}."""
    from sdlab.organism.tasks import family_tasks, question_text

    rng = random.Random(f"corpus:{seed}")
    pools = {kind: family_tasks(f"{kind}-pretrain") for kind in ("linmod", "narrow", "check")}
    documents = []
    for kind in rng.choices(DOC_KINDS, weights=DOC_WEIGHTS, k=n_docs):
        if kind == "drill":
            documents.append({"kind": kind, "text": drill_text(rng)})
            continue
        family = kind.removesuffix("_context")
        task = rng.choice(pools[family])
        question = question_text(task)
        if kind.endswith("_context"):
            context = context_for(task, rng.choices(CONTEXT_KINDS, weights=CONTEXT_WEIGHTS)[0], rng)
            user, reply = wrap_context(question, context, trl=rng.random() < 0.4), guided_response(task, context, rng)
        else:
            user, reply = question, unguided_response(task, rng)
        documents.append({"kind": kind, "messages": [{"role": "user", "content": user}], "response": reply})
    return documents
