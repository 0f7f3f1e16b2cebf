"""Git and the work trees the agents edit: opening a tag, checking an edit, committing it."""

# What the other packages use, from the module that defines it:
# git.py, guard.py, merge.py, slots.py
__all__ = ["Git", "TRAIN", "text_hash", "Blame", "Guard", "PROGRAM", "RUN_LABEL", "Suspects",
           "checkout_area", "culprits", "data_area", "data_fingerprint", "environment_area",
           "git_area", "lost_message", "merge", "Slot", "TREES"]
