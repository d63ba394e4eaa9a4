"""Errors the loaders raise. All derive from graph.errors.RiskGraphError."""

from __future__ import annotations

from pathlib import Path

from graph.errors import RiskGraphError


class LoadError(RiskGraphError):
    """A load cannot start or go on."""


class FatalFileError(LoadError):
    """A file cannot be loaded at all: missing, unreadable, wrong encoding, missing
    required columns. Found before anything is written."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class IncompleteLoadError(LoadError):
    """A file's rows could not all be accounted for (a defect; the load stops)."""
