"""Reports read run folders only; they never call a model."""

from .metrics import aggregate, summarize
from .render import render

__all__ = ["aggregate", "render", "summarize"]
