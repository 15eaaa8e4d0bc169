"""Output repair: turn a broken model output into JSON and name every fix.

Open models asked for JSON (bare, in ``[CONTENT]...[/CONTENT]`` tags as in
MetaGPT, or in a ```json fence) often produce almost-JSON.  The harness scores
each output raw and repaired, and records which repairs it took, so repairs
are small, named and ordered (`REPAIR_KINDS`, each explained in `KIND_DOCS`):

1. ``extract``       find the payload: tags (broken ones too), fence, prose;
2. ``strings``       by hand: triple-quoted strings, unescaped inner quotes;
   ``structure``     by hand, one linear pass: comments, edge brackets, stray
                     ``],`` lines, truncation; plus the pre-check that names
                     what json_repair will fix;
3. ``syntax``        json_repair for everything else (strings masked, so it
                     only touches structure), named by ``attribution``;
4. ``schema_aware``  list wrapping, key case, numeric/boolean strings.

``pipeline`` runs them; ``command`` is ``harness repair``.

Usage::

    outcome = repair_output(text, "content", schema)
    outcome.ok, outcome.value, outcome.text, outcome.repairs, outcome.error

Guarantees: output valid for its format is returned unchanged with no
repairs; repairing ``outcome.text`` again gives no repairs; every call is
linear and bounded (payloads over 256 KB or nested deeper than 64 levels are
refused unless they parse strictly); only `RepairError` escapes, and only for
a wrong call.
"""

from .kinds import KIND_DOCS, REPAIR_KINDS
from .outcome import RepairError, RepairOutcome
from .pipeline import OUTPUT_FORMATS, repair_output

__all__ = [
    "KIND_DOCS",
    "OUTPUT_FORMATS",
    "REPAIR_KINDS",
    "RepairError",
    "RepairOutcome",
    "repair_output",
]
