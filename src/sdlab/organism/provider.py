"""The organism as a provider (`sdlab.providers`): `organism:FAMILY:N[:SEED]` problem specs,
the `organism` model (shipped in the package, or built on demand and cached) and what its builds record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdlab.core.io import read_json
from sdlab.core.problem import Problem


class OrganismProvider:
    name = "organism"
    model_options = ("seed", "size", "corpus")  # `organism:seed=1`: the build `sdlab organism build --seed 1` makes

    def load_problems(self, spec: str) -> list[Problem]:
        from sdlab.organism.problems import load_organism_problems

        return load_organism_problems(spec)

    def check_spec(self, spec: str) -> None:
        from sdlab.organism.problems import organism_tasks

        organism_tasks(spec)

    def model_dir(self, **options: Any) -> Path:
        from sdlab.organism.build import organism_dir

        return organism_dir(**options)

    def _record(self, model_dir: str | Path) -> dict[str, Any]:
        from sdlab.organism.build import BUILD_FILE

        return read_json(Path(model_dir) / BUILD_FILE)

    def build_record(self, model_dir: str | Path) -> dict[str, Any]:
        settings_hash = self._record(model_dir).get("settings_hash")
        return {"settings_hash": settings_hash} if settings_hash else {}

    def trained_window(self, model_dir: str | Path) -> int | None:
        from sdlab.organism.build import trained_window

        settings = self._record(model_dir).get("settings")
        return trained_window(settings) if settings else None

    def missing_abilities(self, model_dir: str | Path) -> list[str]:
        return self._record(model_dir).get("missing_abilities", [])


PROVIDER = OrganismProvider()
