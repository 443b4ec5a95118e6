"""Training: one recipe -> one run directory (`run`), over TRL's trainers (GRPO baseline,
the one SDPO subclass, SFT), with the callbacks that log epistemic metrics."""
