"""The organism's model card (README.md in its directory): design, sizes, time, abilities."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from sdlab.organism.gates import checklist

STRATEGY_COLUMNS = ("share_search", "share_derivation", "share_switch", "accuracy_search", "accuracy_derivation", "derivation_steps_right", "derived_right", "failed_then_derivation")
COLUMNS = ("accuracy", "answered", "tokens", "markers", "candidates", "first_candidate_right", "recovery", "failed_then_marker_revision", "failed_then_give_up", "check_copies_right", "check_lookups_right", "check_comparisons_right")

DESIGN = """\
## What is designed in, and what is not

The corpus decides the organism's *starting* behaviour, and only that:

- **Questions** state the equation and end with a worked check of a wrong candidate in the
  checks' own format, so the first check of a response has a line to copy from.
- **Unguided traces** propose a candidate and check it by copying the question's equation and
  computing a chain of modular lookups (`x=3: 4*x + 9 = 5 (mod 7): 4*3=5, 5+9=0. 0 vs 5? no.`);
  after a failed check they verbalise doubt with the study's markers (wait, hmm, perhaps,
  maybe, actually, alternatively, seems, might, check) and revise to the next candidate. The
  first guess is right one time in five; traces give up with a hedged guess after 3 to 9
  failed checks, so accuracy starts imperfect. Their moduli are 5, 7 and 11 (what post-training
  trains on) and, for a tenth as many problems, 13: the harder held-out family `linmod-hard`
  asks other p = 13 problems, where a search needs more candidates.
- **Context-conditioned traces** read a context and use what it reveals: a candidate with a
  visible passing check is trusted (no check, no markers); a claimed answer is checked, with
  more doubt the less the context shows (a regenerated solution that says it was verified: no
  marker; a think-less solution: one; a bare boxed answer: two); a partial search is continued
  where it stopped. Contexts are built from the organism's own typical responses, wrapped in
  the study's template or TRL's SDPO reprompt.
- **Drills** (no task): lookup facts with a yes/no comparison, and checks of one equation with
  fact lines between them (the comparison and a copy from a varying distance, practised).

What is *not* designed in: how any training method changes the organism. The corpus is the
same whatever will train it next (GRPO, SDPO, SFT); it was not tuned to make one win. Whether
self-distillation suppresses the markers, shortens responses or hurts OOD accuracy is what
experiments measure.
"""


DESIGN_V11 = """\
Corpus version 11 adds (docs/organism.md, "Corpus version 11"):

- **A second strategy.** A fifth of the unguided traces at p = 5, 7, 11 (a twentieth at p = 13)
  derive the answer directly, every step one practised fact
  (`directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=6. so x=6.`), no marker and no
  search; the fact drills practise the inverses at p = 5, 7, 11 (never at 13) and negations.
  At p = 13 the derivation is designed to be unreliable: its inverse facts are rarely seen.
- **A teacher that derives.** A context that shows the answer verified (a passing check, a
  derivation), right or wrong, is answered with the derivation from the question; a quarter of
  those replies begin a search and, after a failed check, turn to the derivation with no doubt
  (not in the ablation `11-nomidsearch`, which keeps searching with doubt). The narrow reply to
  a context is its one computation, without the habitual re-check.
"""


def abilities_table(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    header = "| family | context | " + " | ".join(columns) + " |"
    lines = [header, "|" + " --- |" * (len(columns) + 2)]
    for row in rows:
        lines.append(f"| {row['family']} | {row['context']} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def model_card(stats: dict) -> ModelCard:
    """The model directory's card (README.md: hub metadata, then the build's recorded statistics)."""
    data = ModelCardData(library_name="transformers", license="apache-2.0", pipeline_tag="text-generation", tags=["sdlab", "model-organism", "self-distillation"])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_text(stats)}")


def card_text(stats: dict) -> str:
    """The card's Markdown body."""
    s = stats["settings"]
    abilities = stats.get("abilities")
    measured = abilities_table(abilities) if abilities else "(not measured in this build)"
    later = stats["corpus_version"] != 10
    design = DESIGN + ("\n" + DESIGN_V11 if later else "")
    if abilities and later:
        measured += "\n\nStrategies (search, derivation, or a search that turned to the derivation) and their accuracy:\n\n" + abilities_table(abilities, STRATEGY_COLUMNS)
    return f"""# sdlab model organism ({stats['size']}, seed {stats['seed']})

A tiny reasoning model pretrained from scratch on CPU by `sdlab organism build`, so that
probe, GRPO, self-distillation and evaluation run end to end on the code paths a real model
uses. Task families, spec syntax and design: `docs/organism.md` in the sdlab repository.

## Model and corpus

- LlamaForCausalLM: hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads, MLP {s['intermediate']}, tied embeddings; {stats['parameters']:,} parameters.
- Tokenizer: byte-level BPE, vocabulary {stats['vocab']}, digits never merged, no token across a line break, `\\boxed{{` one token; `<think>`/`</think>` are ordinary tokens; eos `<|im_end|>`, pad `<|endoftext|>`; Qwen3-style chat template with `enable_thinking`.
- Corpus (version {stats['corpus_version']}): {stats['corpus_documents']:,} documents, {stats['corpus_tokens']:,} tokens, from the `pretrain` split only (no train or eval problem, no `linmod-hard` or `sqmod` problem; p = 13 only in its `pretrain` split); documents by kind: {stats['documents_by_kind']}.
- Pretraining: next-token loss on every token, AdamW, peak lr {s['lr']}, {s['steps']} steps of {s['batch']} x {s['seq_len']} tokens, then {s['extend_steps']} of {s['extend_batch']} x {s['extend_seq_len']} at the final lr (window extension; {stats['trained_tokens']:,} tokens); loss {stats['loss_first']} -> {stats['loss_last20']}.
- Time on {stats['threads']} CPU threads{f" of {stats['cpu']}" if 'cpu' in stats else ""}, steps in {stats.get('precision', 'bf16 autocast')}: corpus and tokenizer {stats['corpus_seconds']} s, training {stats['train_seconds']} s, whole build {stats.get('build_seconds', '?')} s.{f" Weights sha256 {stats['weights_sha256']}." if 'weights_sha256' in stats else ""}

{design}
## Measured abilities

One sample per problem at temperature 0.6 (top-p 0.95, top-k 20), evaluation splits only;
contexts built by `sdlab.core.contexts` with the study's template.

{measured}

## Health

{health(stats)}
{gates_section(stats)}"""


def gates_section(stats: dict) -> str:
    """Corpus version 11's gates as measured on a larger sample, when the record holds them
    (the shipped organism's does: `gates`, with the command that measured them)."""
    gates = stats.get("gates")
    if not gates:
        return ""
    return f"""
## Gates (docs/organism.md)

Measured with `{gates['command']}`:

{checklist(gates['results'])}
"""


def health(stats: dict) -> str:
    """Which abilities the experiments rely on this draw lacks (`measure.REQUIRED_ABILITIES`)."""
    if "missing_abilities" not in stats:
        return "(not judged: abilities not measured in this build)"
    if not stats["missing_abilities"]:
        return "Every required ability measured is present (`sdlab.organism.measure.REQUIRED_ABILITIES`)."
    lines = "\n".join(f"- {ability}" for ability in stats["missing_abilities"])
    return f"""This draw **lacks** abilities the experiments rely on:

{lines}

A build's weights depend on its seed, the CPU and the step precision ({stats.get('precision', '?')} here), and
these abilities are phase transitions of pretraining that some draws miss
(docs/measurements.md#organism). Results on this organism that use the missing ability
(the probe's no-think and hint rows, an SDPO teacher shown less than a full solution) read
noise; another `--seed` is a new draw."""
