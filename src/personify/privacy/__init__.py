"""Privacy: consent (state, history, the fail-closed gate), subject access export, erasure,
keyed hashes of identifiers, masking, and the audit log.

- :mod:`.consent` — :func:`consented` (the gate, one query per batch), :func:`record` (a change,
  with proof), :func:`set_consent` (an explicit change for a whole person), :func:`do_not_sell`
  (CCPA opt-outs);
- :mod:`.suppress` — :func:`suppress` (unsubscribes, bounces, complaints);
- :mod:`.export`, :mod:`.erase` — subject access and erasure over :mod:`.footprint`;
- :mod:`.stage` — the pipeline stage (tracking consent, consent kinds, tombstones);
- :mod:`.hashing`, :mod:`.masking`, :mod:`.audit`, :mod:`.compact`.
"""

from personify.privacy.consent import consented as consented
from personify.privacy.consent import do_not_sell as do_not_sell
from personify.privacy.consent import record as record
from personify.privacy.consent import set_consent as set_consent
from personify.privacy.suppress import suppress as suppress

__all__ = ["consented", "do_not_sell", "record", "set_consent", "suppress"]
