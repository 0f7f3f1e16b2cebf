"""Held-out verification: keeps checked on a private split that training runs cannot read
(execution/sandbox.py makes both views: a training run's, the private split hidden, and a
verification's, everything read-only, no network).

evaluate.py the verification process: a run's weights and model class, the fixed evaluate_bpb,
            the number on stdout
private.py  the loop's side: which runs are evaluated, the cache, the keep-or-refuse decision
"""

# What the other packages use, from private.py
__all__ = ["CACHE_FILE", "PRIVATE_DIR", "PrivateSummary", "Verifier", "open_verification",
           "private_curve", "private_split", "private_summary", "without_private"]
