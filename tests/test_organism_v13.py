"""Corpus versions 13 to 15: version 11 whose teacher reads a student's search instead of writing one.

Version 11's teacher switched to the derivation after the first failed check of a search it
wrote itself, and kept doubting after the third. Version 13's search-first replies are a
student's search, cut after any one of its failed checks, on which the build puts no loss;
version 14 has twice as many of them; version 15 never derives at p = 13."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter

from sdlab.core.epistemic import count_markers
from sdlab.core.grading import extract_answer, split_think
from sdlab.organism.build import IGNORE, size_spec, target_lists, untrained_organism
from sdlab.organism.corpus import V13, V15, corpus_documents, guided_response, read_prefix_chars
from sdlab.organism.derivation import strategy_of
from sdlab.organism.problems import to_problem
from sdlab.organism.tasks import Task, family_tasks


def think_of(text: str) -> str:
    return split_think(text)[0] or ""


def test_the_teacher_reads_a_search_cut_after_any_of_its_failed_checks_then_derives() -> None:
    rng = random.Random(0)
    cuts = Counter()
    for task in family_tasks("linmod-pretrain")[:600]:
        problem = to_problem(task, family="linmod-eval")
        reply = guided_response(task, problem.solution, rng, V13)
        read = read_prefix_chars(reply)
        if strategy_of(think_of(reply)) != "switch":
            assert read == 0 and strategy_of(think_of(reply)) == "derivation"
            continue
        search, written = reply[:read], reply[read:]
        assert search.endswith("? no.\n") and written.startswith("directly: ")  # cut right after a failed check
        assert count_markers(written) == 0 and extract_answer(reply) == problem.answer
        cuts[search.count("? no.")] += 1
    assert sum(cuts.values()) > 80
    assert sum(n for k, n in cuts.items() if k >= 3) > 0.25 * sum(cuts.values())  # later failed checks too, not mostly the first


def test_a_reply_without_a_failed_check_before_its_derivation_reads_nothing() -> None:
    assert read_prefix_chars("<think>\ndirectly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=6. so x=6.\n</think>") == 0
    passing = "<think>\ntry x=6: 4*x + 2 = 5 (mod 7): 4*6=3, 3+2=5. 5 vs 5? yes. it works.\n</think>"
    assert read_prefix_chars(passing) == 0


def test_version_13_differs_from_11_only_in_the_teachers_search_first_replies() -> None:
    v11, v13 = corpus_documents(3000, seed=0, corpus="11"), corpus_documents(3000, seed=0, corpus="13")
    differ = [(a, b) for a, b in zip(v11, v13) if a != b]
    assert differ and {a["kind"] for a, _ in differ} == {"linmod_context"}
    assert len(differ) < 0.05 * len(v11)
    read = [d for d in v13 if "read_chars" in d]
    assert read and all(d["read_chars"] == read_prefix_chars(d["response"]) > 0 for d in read)
    assert not any("read_chars" in d for d in v11)


def test_version_14_reads_twice_as_many_searches_and_differs_from_13_in_those_replies_alone() -> None:
    v13, v14 = corpus_documents(9000, seed=0, corpus="13"), corpus_documents(9000, seed=0, corpus="14")
    read13, read14 = (sum("read_chars" in d for d in docs) for docs in (v13, v14))
    assert 1.6 < read14 / read13 < 2.4
    assert {a["kind"] for a, b in zip(v13, v14) if a != b} == {"linmod_context"}


def test_the_build_puts_no_loss_on_the_search_the_teacher_reads() -> None:
    documents, tokenizer, token_lists, _ = untrained_organism(size_spec("test", "13"), seed=0, corpus="13")
    targets = target_lists(tokenizer, documents, token_lists)
    assert sum("read_chars" in d for d in documents) >= 2
    for document, ids, target in zip(documents, token_lists, targets):
        if "read_chars" not in document:
            assert target == ids
            continue
        ignored = [i for i, t in enumerate(target) if t == IGNORE]
        assert ignored == list(range(ignored[0], ignored[-1] + 1))  # one span: the search read
        assert tokenizer.decode([ids[i] for i in ignored]) == document["response"][: document["read_chars"]]
        assert tokenizer.decode(ids[ignored[-1] + 1:]).startswith("directly: ")  # what the teacher writes is learned
        assert target[ignored[-1] + 1:] == ids[ignored[-1] + 1:] and target[: ignored[0]] == ids[: ignored[0]]


def test_version_11_writes_the_documents_its_shipped_build_trained_on() -> None:
    """Later versions share version 11's writers; its documents (sha256 taken before version 13
    existed) must not move, or the shipped weights no longer reproduce."""
    documents = corpus_documents(300, seed=0, corpus="11")
    assert hashlib.sha256(json.dumps(documents, sort_keys=True).encode()).hexdigest() == "f02c0475cc3246670bbd7f2f11f243f16eaa4e1b8d8b7161edc67c80cc58de18"


def test_version_15_never_writes_a_derivation_at_p13_and_derives_at_the_id_moduli() -> None:
    documents = corpus_documents(9000, seed=0, corpus="15")
    assert not any(re.search(r"\(mod 13\): -\d+=", json.dumps(d)) for d in documents)
    rng = random.Random(0)
    p13 = Task("linmod", 13, 4, 2, 5)
    reply = guided_response(p13, to_problem(p13, family="linmod-hard").solution, rng, V15)
    assert reply.startswith("<think>\nthe solution shows it works: \\boxed{") and extract_answer(reply) == str(to_problem(p13, family="linmod-hard").answer)
    id_task = Task("linmod", 7, 4, 2, 5)
    assert strategy_of(think_of(guided_response(id_task, to_problem(id_task, family="linmod-eval").solution, random.Random(3), V15))) in ("derivation", "switch")
