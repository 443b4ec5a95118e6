"""`sdlab probe`: the context-richness probe (Table 1, information gap, divergence split)."""

from __future__ import annotations

from pathlib import Path

import typer

from sdlab import SdlabError


def probe(
    recipe: Path = typer.Argument(None, help="Optional probe recipe (recipes/probe/organism.yaml); options below override it."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. alpha=1.0 entropy_under=model"),
    model: str = typer.Option(None, "--model", help="Model directory, hub id or `organism`."),
    data: str = typer.Option(None, "--data", help="Problems: parquet/JSONL path, datasets dir or an organism spec (organism:linmod:512)."),
    contexts: str = typer.Option(None, "--contexts", help="Comma-separated: none, solution, solution_nothink, regenerated, partial:F, hint."),
    n: int = typer.Option(None, "--n", min=1, help="Samples per problem and context (study: 8)."),
    out: Path = typer.Option(None, "--out", help="Output directory (probe.json, probe.md, samples.jsonl, heatmap.html)."),
    limit_problems: int = typer.Option(None, "--limit-problems", min=1, help="Stop once this many problems are in the band (study: 100)."),
    band: str = typer.Option(None, "--band", help="lo,hi: keep problems solved lo to hi times of n unguided (study: 1,4)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1),
    seed: int = typer.Option(None, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out directory."),
) -> None:
    """Context-richness probe: score, length and epistemic words per teacher context (the study's Table 1),
    the information gap H(y|x) - H(y|x,c), the student/teacher divergence split by marker tokens, and a token heatmap."""
    from sdlab.config import apply_overrides, build_config, read_yaml
    from sdlab.config.schema import ProbeConfig
    from sdlab.probe.probe import run_probe
    from sdlab.probe.tables import format_tables

    values = read_yaml(recipe) if recipe else {}
    apply_overrides(values, overrides or [])
    options = dict(model=model, data=data, contexts=contexts, n=n, out=str(out) if out else None, limit_problems=limit_problems, max_new_tokens=max_new_tokens, seed=seed)
    values.update({key: value for key, value in options.items() if value is not None})
    if band is not None:
        try:
            values["band"] = [int(x) for x in band.split(",")]
        except ValueError:
            raise SdlabError(f"--band {band!r}: give two integers lo,hi such as 1,4") from None
    config = build_config(ProbeConfig, values, source=str(recipe) if recipe else "sdlab probe options")
    from sdlab.providers import resolve_model

    config.model = resolve_model(config.model)
    summary = run_probe(config, force=force)
    print(format_tables(summary))
    print(f"\n{config.out}: probe.json, probe.md, samples.jsonl, heatmap.html ({summary['wall_time_s']:.0f} s)")
