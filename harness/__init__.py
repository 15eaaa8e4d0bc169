"""harness: does this open model follow our structured prompts? Numbers, raw and repaired."""

__version__ = "0.1.0"
