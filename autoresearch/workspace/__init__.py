"""Git and the work trees the agents edit: opening a tag, checking an edit, committing it."""

# What the other packages use, from the module that defines it:
# git.py, guard.py, merge.py, slots.py, watch.py
__all__ = ["Git", "TRAIN", "commit_message", "text_hash", "Guard", "PROGRAM", "RUN_LABEL",
           "checkout_area", "data_area", "data_fingerprint", "environment_area", "git_area",
           "Carried", "carry", "Slot", "TREES", "Watch"]
