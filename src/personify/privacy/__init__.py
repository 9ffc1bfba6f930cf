"""Privacy: consent (state, history, the fail-closed gate), subject access export, erasure,
keyed hashes of identifiers, and the audit log.

- :mod:`.consent` — :func:`consented` (the gate), :func:`record` (a change, with proof);
"""

from personify.privacy.consent import consented as consented
from personify.privacy.consent import record as record

__all__ = ["consented", "record"]
