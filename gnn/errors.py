"""Errors raised by the GNN layer."""

from __future__ import annotations

from graph.errors import RiskGraphError


class GnnError(RiskGraphError):
    """A problem training, loading or running a model."""


class ModelNotFoundError(GnnError, LookupError):
    """No trained model where one was asked for."""


class NotEnoughLabelsError(GnnError, ValueError):
    """Training or evaluation needs labelled examples of both classes."""
