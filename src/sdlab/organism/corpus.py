"""The organism's pretraining corpus: chat traces that search, check and revise.

What is designed in here is the organism's *starting* behaviour, and only that:

* unguided traces propose a candidate, check it by copying the question's equation and
  computing a short chain of small modular lookups (`x=3: 4*x + 9 = 5 (mod 7): 4*3=5,
  5+9=0. 0 vs 5? no.`), and on a failed check verbalise doubt with the study's markers and
  revise to the next candidate; some traces give up after a budget with a hedged guess, so
  accuracy starts imperfect;
* context-conditioned traces read a context (a correct solution, the same without its think
  block, its first fraction, a bare `\\boxed{}` answer) and use what it *reveals*: a
  verified candidate is trusted (no check, no markers), a claimed answer is checked (with
  more doubt the less the context shows), a partial search is continued where it stopped.
  The behaviour depends on the context's content, never on its wrapper, so every teacher
  prompt sdlab builds (the study's template, TRL's SDPO reprompt) is in distribution;
* drills (no task): lookup facts with a verdict, and checks of one equation separated by
  facts, where the verdict and a copy of the equation from a varying distance are practised.

Corpus version 11 (`CorpusDesign`, a parameter of every writer, so versions share one code
path) adds a second strategy and a teacher with something learnable to teach: a fifth of the
unguided ID traces (a twentieth at p = 13) derive the answer directly (`derivation.py`); a
context that shows the answer verified is answered with that derivation (not with a copy of
the answer), also when the context's answer is wrong; a reply that began a search switches to
the derivation after a failed check, with no doubt (the ablation `11-nomidsearch` keeps
searching with doubt); the narrow family's reply to a context is its one computation; the fact
drills practise inverses (ID moduli only) and negations. Versions 13 to 15 (tried, not the
default) let the teacher read a student's search before it derives, and 15 never derives at
p = 13 (docs/organism.md).

Nothing here knows which algorithm will train the organism later.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from sdlab import SdlabError
from sdlab.core.grading import remove_think
from sdlab.organism.derivation import INTRO as DERIVATION_INTRO
from sdlab.organism.derivation import derivation_line, inverse_fact_line, negation_fact_line
from sdlab.organism.tasks import HARD_PRIMES, ID_PRIMES, Task, brute_force_answer, chain, equation, example_candidate, family_tasks, lhs, lookups, question_text

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STUDY_TEMPLATE = "{question}\n\nCorrect solution: {solution}\n\nCorrectly solve the original question."
# TRL 1.16 SDPOConfig defaults (reprompt_template, solution_template), with no feedback.
TRL_REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
TRL_SOLUTION_TEMPLATE = "\nCorrect solution:\n\n{successful_previous_attempt}\n\n"

DOUBTS = ("wait, that fails.", "hmm, no.", "wait, wrong.", "actually, that fails.", "hmm, that seems wrong.")
LEADS = ("perhaps ", "maybe ", "try ", "alternatively, ", "let me check ")
INTUITION = 0.2  # the chance that the first guess is right (the writer "knows" the answer)
# Marker-free openings, 0 to 3 of them before the first check: the first check then sits at a
# varying distance from the question's example, so it copies the equation by content, as it
# must after a context, and not from a fixed position.
OPENINGS = ("let me search for x.", "the answer is one of 0..{top}.", "one candidate at a time.", "a guess first, then a test.", "each test is one product and one sum.")
BUDGET = (3, 9)  # failed candidates tolerated before giving up, uniform in this range

# A check line: x, equation, lookups, value, target, verdict (`x=3: 4*x + 9 = 5 (mod 7): 4*3=5, 5+9=0. 0 vs 5? no.`)
CHAIN = re.compile(r"x=(\d+): ([^:\n]+): ((?:\d+\*\d+=\d+, \d+\+\d+=\d+(?:, )?)+)\. (\d+) vs (\d+)\? (yes|no)\.")
BOXED = re.compile(r"\\boxed\{(\d+)\}")
CLAIM = re.compile(r"might be x=(\d+)")
VERIFIED_INTRO = "the solution shows it works:"  # the response to a visible passing check
HOLDS = re.compile(r"x=\d+: [^:\n]+ holds\.")  # a think-less solution: the answer with its equation

DOC_KINDS = ("linmod", "linmod_context", "narrow", "narrow_context", "check", "fact_drill", "check_drill")
CONTEXT_KINDS = ("solution", "solution_nothink", "partial", "hint", "wrong_hint", "wrong_solution")


@dataclass(frozen=True)
class CorpusDesign:
    """What one corpus version writes. Every version goes through the same writers; a field at
    its default writes (and draws from the seed) exactly what version 10 did."""

    version: int | str  # as recorded in build.json and the model card
    doc_weights: tuple[float, ...]  # over DOC_KINDS
    context_weights: tuple[float, ...]  # over CONTEXT_KINDS
    # (p, share of unguided linear traces at modulus p that derive instead of searching)
    derivation_share: tuple[tuple[int, float], ...] = ()
    teacher_derives: bool = False  # a context showing the answer verified -> the derivation, not "the solution shows it works"
    search_first: float = 0.0  # of those replies, the share that begins a search, as a student's response does
    midsearch_switch: float = 0.0  # in such a search, the chance that a failed check is followed by the derivation, no doubt
    # version 13: that search is a student's response the teacher reads (no loss on it), cut
    # after any one of its failed checks, and the teacher writes only the derivation after it
    reads_student_search: bool = False
    drill_inverses: bool = False  # an inverse fact (ID moduli only) and a negation fact in every fact drill
    # each document draws from its own seed, so a variant that changes one kind of reply (the
    # ablation) changes the documents that hold it and no others
    document_seeds: bool = False
    # main pretraining steps as a multiple of the size's: version 11's corpus asks for the copies
    # of the question's numbers in more places, and at version 10's 1,900 steps its draws missed them
    steps_scale: float = 1.0

    def derives(self, p: int) -> float:
        return dict(self.derivation_share).get(p, 0.0)


# Drills carry the facts and the copy by content that every check needs; with fewer of them
# (v7: 12% and 8.5%) whether a build learned both depended on the seed and the CPU.
V10 = CorpusDesign(version=10, doc_weights=(0.30, 0.22, 0.07, 0.02, 0.05, 0.19, 0.15), context_weights=(0.25, 0.2, 0.35, 0.15, 0.05, 0.0))
# v11 keeps the drills' shares and the searches' count (the derivations come on top, from the
# narrow and check shares), and gives the teacher's contexts a little more room.
V11 = CorpusDesign(
    version=11, doc_weights=(0.32, 0.24, 0.05, 0.02, 0.03, 0.19, 0.15), context_weights=(0.25, 0.2, 0.3, 0.12, 0.05, 0.08),
    # p = 13's inverse facts are never drilled, and p = 13 derives in a twentieth of its traces:
    # the derivation is designed to be unreliable there, where the search with checks still works.
    derivation_share=((5, 0.2), (7, 0.2), (11, 0.2), (13, 0.05)),
    teacher_derives=True, search_first=0.25, midsearch_switch=0.8, drill_inverses=True, document_seeds=True, steps_scale=2.0,
)
# v13: version 11's teacher switched after the first failed check of its own search (0.18 of the
# student's doubt there) but doubted like the student after the third (0.95), where most of the
# student's failed checks are: its replies almost never reached a third. Version 13's teacher
# reads a student's whole search, cut after any one of its failed checks, and is trained only on
# what it writes after it, as an SDPO teacher is scored on a student's rollout.
V13 = replace(V11, version=13, reads_student_search=True)
# v14: version 13 with half the replies to an answer-revealing context reading a student's
# search (a quarter in 11 and 13): version 13's teacher still doubted after a later failed check
# with 0.72-0.76 of the student's probability, taught there by 89 documents of 9,000.
V14 = replace(V13, version=14, search_first=0.5)
# v15: version 14 with no derivation at p = 13, unguided or the teacher's (which trusts a
# verified solution there, as version 10's did): p = 13's inverse facts are never written, so
# the derivation breaks there on every build. Version 11's 110 derivation lines at p = 13 per
# corpus left the derivation right there in 0.56-0.88 of builds' responses, a draw.
V15 = replace(V14, version=15, derivation_share=((5, 0.2), (7, 0.2), (11, 0.2)))
DESIGNS = {"10": V10, "11": V11, "11-nomidsearch": replace(V11, version="11-nomidsearch", midsearch_switch=0.0), "13": V13, "14": V14, "15": V15}
DEFAULT_CORPUS = "11"  # the shipped organism's (docs/organism.md); version 10's Results are in docs/results-v10.md


def corpus_design(corpus: str | int) -> CorpusDesign:
    """The design of a corpus version name (`10`, `11`, `11-nomidsearch`, `13`, `14`, `15`)."""
    if str(corpus) not in DESIGNS:
        raise SdlabError(f"corpus version {corpus!r} unknown; choose one of {', '.join(DESIGNS)}")
    return DESIGNS[str(corpus)]


def final_text(task: Task, x: int, *, verified: bool) -> str:
    """What follows the think block: the answer with its equation, or a hedged guess."""
    if not verified:
        return f"The answer might be \\boxed{{{x}}}."
    return f"x={x}: {equation(task)} holds. The answer is \\boxed{{{x}}}."


def response(think_lines: list[str], answer: str) -> str:
    return f"{THINK_OPEN}\n" + "\n".join(think_lines) + f"\n{THINK_CLOSE}\n\n{answer}"


def search_lines(task: Task, start: int, rng: random.Random, *, budget: int | None, first_lead: str = "try ", skip: frozenset[int] = frozenset(), switch: float | None = None) -> tuple[list[str], int, bool]:
    """Sequential search from `start` (cyclic, skipping `skip`: candidates known to fail, such as
    the question's example): (lines, final x, verified). sqmod asks for the smallest solution, so
    its search starts at 0 and goes up. `switch`: the chance that a failed check is followed by
    the derivation, with no doubt, which ends the search (a writer that knows the answer); drawn
    even at 0, so a writer that never switches draws the same doubts as one that may."""
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
        if switch is not None and rng.random() < switch:
            lines.append(derivation_line(task))
            return lines, brute_force_answer(task), True
        if budget is not None and failures > budget:
            tried = set(order[: order.index(x) + 1]) | skip
            guess = rng.choice([y for y in range(task.p) if y not in tried] or list(range(task.p)))
            lines.append(f"hmm, too many tries. it might be x={guess}.")
            return lines, guess, False
        lead = f"{rng.choice(DOUBTS)} {rng.choice(LEADS)}"
    raise ValueError(f"{task.key}: no candidate in {order} satisfies the equation")


def first_guess(task: Task, rng: random.Random) -> int:
    """The writer's intuition: right with probability INTUITION, else a random wrong candidate
    other than the question's example."""
    if task.kind == "sqmod":
        return 0
    answer = brute_force_answer(task)
    if rng.random() < INTUITION:
        return answer
    return rng.choice([x for x in range(task.p) if x not in (answer, example_candidate(task))])


def narrow_lines(task: Task) -> tuple[str, str]:
    """The narrow family's one computation, and the final line that states its result."""
    steps, value = lookups(task.p, task.a, task.b, task.c)
    expression = f"({task.a}*{task.b} + {task.c}) mod {task.p}"
    return f"{expression}: {steps}.", f"{expression} = {value}. The answer is \\boxed{{{value}}}."


def check_final(task: Task) -> str:
    verdict = brute_force_answer(task)
    return f"x={task.x} {'works' if verdict else 'fails'}. The answer is \\boxed{{{verdict}}}."


def openings(task: Task, rng: random.Random) -> list[str]:
    """0 to 3 marker-free opening lines before a search (`OPENINGS`)."""
    return [o.format(top=task.p - 1) for o in rng.sample(OPENINGS, rng.choice((0, 0, 1, 1, 2, 3)))]


def derivation_response(task: Task) -> str:
    """The concise derivation, then the same final line as a verified search."""
    return response([derivation_line(task)], final_text(task, brute_force_answer(task), verified=True))


def unguided_response(task: Task, rng: random.Random, *, give_up: bool = True, design: CorpusDesign = V10) -> str:
    """A response without context: a search, or (a `design.derives(p)` share of linear
    problems) the derivation. `give_up=False` searches until the answer is found."""
    if task.kind == "narrow":
        line, final = narrow_lines(task)
        lines = [line]
        if rng.random() < 0.5:  # a habitual, unneeded re-check: room for compression
            lines.append(f"wait, let me check again: {line.split(': ', 1)[1]} yes.")
        return response(lines, final)
    if task.kind == "check":
        return response([f"try {chain(task, task.x)}"], check_final(task))
    share = design.derives(task.p) if task.kind == "linmod" else 0.0
    if share and rng.random() < share:
        return derivation_response(task)
    budget = rng.randint(*BUDGET) if give_up else None
    opening = openings(task, rng)
    lines, x, verified = search_lines(task, first_guess(task, rng), rng, budget=budget, skip=frozenset({example_candidate(task)}))
    return response(opening + lines, final_text(task, x, verified=verified))


def teacher_derivation(task: Task, rng: random.Random, design: CorpusDesign) -> str:
    """The reply to a context that shows the answer verified: the derivation, computed from the
    question (so a wrong "verified" answer is not followed). A `design.search_first` share
    begins a search as a student's response does; after a failed check it turns to the
    derivation with no doubt (`midsearch_switch`), or in the ablation keeps searching with
    doubt. That reply draws from its own seed, so the ablation differs in it alone. With
    `design.reads_student_search` the search is a student's (`read_search_then_derive`)."""
    if design.search_first and rng.random() < design.search_first:
        own = random.Random(rng.getrandbits(64))
        if design.reads_student_search:
            return read_search_then_derive(task, own)
        opening = openings(task, own)
        lines, x, _ = search_lines(task, first_guess(task, own), own, budget=None, skip=frozenset({example_candidate(task)}), switch=design.midsearch_switch)
        return response(opening + lines, final_text(task, x, verified=True))
    return derivation_response(task)


def read_search_then_derive(task: Task, rng: random.Random) -> str:
    """A student's search as `unguided_response` writes it (doubts and giving up included), cut
    after one of its failed checks drawn uniformly, so the cuts fall where a student's failed
    checks fall; then the derivation, with no doubt. The search is read, not written:
    `read_prefix_chars` finds it, and the build trains on the rest alone. A search whose first
    guess is right has no failed check and gets the plain derivation."""
    opening = openings(task, rng)
    lines, _, _ = search_lines(task, first_guess(task, rng), rng, budget=rng.randint(*BUDGET), skip=frozenset({example_candidate(task)}))
    failed = [i for i, line in enumerate(lines) if line.endswith("? no.")]
    if not failed:
        return derivation_response(task)
    cut = rng.choice(failed)
    return response(opening + lines[: cut + 1] + [derivation_line(task)], final_text(task, brute_force_answer(task), verified=True))


def read_prefix_chars(reply: str) -> int:
    """How many leading characters of a version-13 teacher reply are a student's search it read:
    everything before a derivation that follows a failed check (0 when there is none)."""
    at = reply.find("\n" + DERIVATION_INTRO)
    if at < 0 or not any(match[6] == "no" for match in CHAIN.finditer(reply[:at])):
        return 0
    return at + 1


def reference_solution(task: Task) -> str:
    """The problem's correct solution (a full trace, think block included), fixed by its key."""
    return unguided_response(task, random.Random(task.key), give_up=False)


def read_context(text: str) -> dict:
    """What a context reveals, from the most to the least: a candidate with a passing check
    (`verified`), a derivation (`derives`, even cut short), a claim that the answer was verified
    (a version-10 regenerated context: `claims_verified`), the answer with its equation (a
    think-less solution: `holds`), a bare or hedged answer (`claimed`), and the candidates whose
    checks failed (`failed`, in order)."""
    verified, failed = None, []
    for match in CHAIN.finditer(text):
        if match[6] == "yes":
            verified = int(match[1])
        else:
            failed.append(int(match[1]))
    claims = BOXED.findall(text) or CLAIM.findall(text)
    return {
        "verified": verified, "claimed": int(claims[-1]) if claims else None, "failed": failed,
        "claims_verified": VERIFIED_INTRO in text, "holds": bool(HOLDS.search(text)), "derives": DERIVATION_INTRO in text,
    }


def guided_response(task: Task, context: str, rng: random.Random, design: CorpusDesign = V10) -> str:
    """A response given a context: trust a visible passing check or a reported one (a
    regenerated context; version 11 derives instead, `teacher_derivation`), check what is only
    claimed (with more doubt the less the context shows), continue a partial search where it
    stopped. Version 11's narrow reply to any context is its one computation, no re-check.

    The claimed answer is written after `\\boxed{`, the token that precedes it in the context, so
    taking it over is a one-token copy (an induction pattern) and not a search for a line."""
    seen = read_context(context)
    claimed = seen["claimed"]
    if task.kind == "narrow" and design.teacher_derives:
        line, final = narrow_lines(task)
        return response([line], final)
    if task.kind in ("narrow", "check"):
        if claimed is not None:
            final = narrow_lines(task)[1] if task.kind == "narrow" else check_final(task)
            return response([f"the solution gives \\boxed{{{claimed}}}."], final)
        return unguided_response(task, rng)
    shows_answer = seen["verified"] is not None or (seen["claims_verified"] and claimed is not None)
    if design.teacher_derives and design.derives(task.p) and (shows_answer or seen["derives"]):
        return teacher_derivation(task, rng, design)
    if shows_answer:
        x = seen["verified"] if seen["verified"] is not None else claimed
        intro = f"{VERIFIED_INTRO} \\boxed{{{x}}}." if claimed == x else f"the solution shows x={x} works."
        return response([intro], final_text(task, x, verified=True))
    known_wrong = frozenset(seen["failed"]) | {example_candidate(task)}
    budget = rng.randint(*BUDGET)
    if claimed is not None:
        if seen["holds"]:
            intro = f"the solution gives \\boxed{{{claimed}}} without its work. let me check."  # one marker
        else:
            intro = f"the answer might be \\boxed{{{claimed}}}. let me check."  # two markers
        lines, x, ok = search_lines(task, claimed, rng, budget=budget, first_lead="", skip=known_wrong - {claimed})
        return response([intro] + lines, final_text(task, x, verified=ok))
    if seen["failed"]:
        start = (seen["failed"][-1] + 1) % task.p
        lines, x, ok = search_lines(task, start, rng, budget=budget, first_lead=rng.choice(LEADS), skip=known_wrong)
        return response([f"the solution tried up to x={seen['failed'][-1]}, which fails."] + lines, final_text(task, x, verified=ok))
    return unguided_response(task, rng, design=design)


def wrong_solution(task: Task, rng: random.Random) -> str:
    """A solution that "verifies" a wrong answer: its one check passes a wrong candidate by a
    falsified sum. A teacher that copied its context would follow it."""
    answer = brute_force_answer(task)
    x = rng.choice([y for y in range(task.p) if y not in (answer, example_candidate(task))])
    product = task.a * x % task.p
    check = f"x={x}: {equation(task)}: {task.a}*{x}={product}, {product}+{task.b}={task.c}. {task.c} vs {task.c}? yes. it works."
    return response([f"try {check}"], final_text(task, x, verified=True))


def context_for(task: Task, kind: str, rng: random.Random, design: CorpusDesign = V10) -> str:
    """A context text of `kind`, built from the organism's own typical responses: an
    unguided correct trace (or, one time in five, a guided one, like a regenerated context)."""
    answer = brute_force_answer(task)
    if kind == "hint":
        return f"\\boxed{{{answer}}}"
    if kind == "wrong_solution" and task.kind == "linmod":
        return wrong_solution(task, rng)
    if kind in ("wrong_hint", "wrong_solution"):
        return f"\\boxed{{{rng.choice([x for x in range(max(task.p, 2)) if x != answer])}}}"
    source = unguided_response(task, rng, give_up=False, design=design)
    if rng.random() < 0.2:
        source = guided_response(task, source, rng, design)
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


def fact_line(rng: random.Random) -> str:
    """One uniformly drawn lookup fact with a verdict that is "yes" half the time. The compared
    number comes after the lookups, so it cannot stand in for the sum they compute."""
    p = rng.choice(ID_PRIMES + HARD_PRIMES)
    a, x, b = rng.randrange(1, p), rng.randrange(p), rng.randrange(p)
    steps, value = lookups(p, a, x, b)
    target = value if rng.random() < 0.5 else rng.choice([v for v in range(p) if v != value])
    return f"mod {p}: {steps}. {value} vs {target}? {'yes' if value == target else 'no'}."


def fact_drill(rng: random.Random, *, lines: int = 12, design: CorpusDesign = V10) -> str:
    """Lookup-fact lines (general pretraining, no task): facts and comparisons that checks need
    but rarely meet in traces; with `design.drill_inverses` also one inverse fact at an ID
    modulus and one negation fact at any, the facts of the derivation, at random places."""
    facts = [fact_line(rng) for _ in range(lines)]
    if design.drill_inverses:
        p = rng.choice(ID_PRIMES)
        facts.insert(rng.randrange(len(facts) + 1), inverse_fact_line(p, rng.randrange(1, p)))
        p = rng.choice(ID_PRIMES + HARD_PRIMES)
        facts.insert(rng.randrange(len(facts) + 1), negation_fact_line(p, rng.randrange(p)))
    return "\n".join(facts)


def check_drill(task: Task, rng: random.Random, *, checks: int = 4, max_gap: int = 6) -> str:
    """Checks of one pretrain-split equation, half at its solution and half at wrong candidates
    (in random order), with 0 to `max_gap` fact lines between consecutive checks: the verdict
    practised in the checks' own format ("yes" exactly half the time), and each check copying
    the equation from a varying distance (a copy by content, as a check after a context of any
    length needs, not by position)."""
    answer = brute_force_answer(task)
    candidates = [answer] * (checks // 2) + [rng.choice([x for x in range(task.p) if x != answer]) for _ in range(checks - checks // 2)]
    rng.shuffle(candidates)
    lines = []
    for i, x in enumerate(candidates):
        if i:
            lines += [fact_line(rng) for _ in range(rng.randint(0, max_gap))]
        lines.append(chain(task, x))
    return "\n".join(lines)


def corpus_documents(n_docs: int, *, seed: int, corpus: str | int = DEFAULT_CORPUS) -> list[dict]:
    """`n_docs` training documents of corpus version `corpus` from the `pretrain` splits only:
    chat documents {"kind", "messages", "response"} and plain-text drills {"kind", "text"}. A
    version-13 reply that reads a student's search also has "read_chars", the length of that
    search at the start of "response", on which the build puts no loss."""
    design = corpus_design(corpus)
    stream = random.Random(f"corpus:{seed}")
    pools = {kind: family_tasks(f"{kind}-pretrain") for kind in ("linmod", "narrow", "check")}
    documents = []
    for kind in stream.choices(DOC_KINDS, weights=design.doc_weights, k=n_docs):
        rng = random.Random(stream.getrandbits(64)) if design.document_seeds else stream
        if kind == "fact_drill":
            documents.append({"kind": kind, "text": fact_drill(rng, design=design)})
            continue
        if kind == "check_drill":
            documents.append({"kind": kind, "text": check_drill(rng.choice(pools["linmod"]), rng)})
            continue
        family = kind.removesuffix("_context")
        task = rng.choice(pools[family])
        question = question_text(task)
        if kind.endswith("_context"):
            context = context_for(task, rng.choices(CONTEXT_KINDS, weights=design.context_weights)[0], rng, design)
            user, reply = wrap_context(question, context, trl=rng.random() < 0.4), guided_response(task, context, rng, design)
        else:
            user, reply = question, unguided_response(task, rng, design=design)
        document = {"kind": kind, "messages": [{"role": "user", "content": user}], "response": reply}
        if design.reads_student_search and (read := read_prefix_chars(reply)):
            document["read_chars"] = read
        documents.append(document)
    return documents
