"""The night's memory: a research journal per tag, its bounded digest for the agents, and the
fingerprints that keep the loop from paying twice for one program."""

# What the other packages use, from the module that defines it (journal also as a module):
# digest.py, fingerprint.py, journal.py, literals.py
__all__ = ["build_digest", "changes", "Code", "fingerprint", "why_known", "journal", "Entry",
           "JOURNAL", "load", "describe_extra", "Constant", "constants_of", "find_constants",
           "profile_overrides", "qualified"]
