"""`sdlab report`: one self-contained HTML page from run, sweep, probe and eval directories."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    inputs: list[Path] = typer.Argument(..., help="Run, sweep, probe or eval directories (or a directory holding several)."),
    out: Path = typer.Option(None, "--out", help="HTML file to write; default: report.html in the first input directory."),
    markdown: Path = typer.Option(None, "--markdown", help="Also write the probe tables and sweep results as Markdown (what the README quotes)."),
) -> None:
    """One self-contained HTML report (training dynamics, probe table, ID/OOD results, coverage, pass@k, SFT table);
    every number also goes to report_data/*.csv beside it. Sweep directories of one experiment run apart
    (same sweep and settings, other seeds) are pooled: their intervals cover all the seeds."""
    from sdlab.report.page import build_report

    path = build_report(inputs, out or inputs[0] / "report.html", markdown=markdown)
    print(f"{path} (data: {path.parent / 'report_data'})")
