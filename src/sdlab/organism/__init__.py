"""The model organism: a tiny reasoning model pretrained on CPU in minutes.

    tasks.py        procedural task families, splits and the `organism:FAMILY:N[:SEED]` spec
    corpus.py       the pretraining traces (unguided search with doubt; context-conditioned)
    tokenizer.py    byte-level BPE with single digits and a Qwen3-style chat template
    build.py        corpus -> tokenizer -> tiny Llama -> pretraining -> saved directory (cached)
    instruments.py  read a response: first candidate, revisions, give-ups, check accuracy
    measure.py      the abilities table of the model card
"""
