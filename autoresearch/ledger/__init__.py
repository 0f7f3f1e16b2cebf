"""The loop's records: results.tsv (the ledger of runs) and .autoresearch/<tag>/ (state, journal,
events). Written only by the decider; read by everything else."""

# What the other packages use, from the module that defines it:
# coordinator.py, results.py, state.py, tags.py, values.py
__all__ = ["Coordinator", "read_reported", "read_results", "EVENTS", "STATE_DIR", "State",
           "TagLock", "clear_stop", "list_tags", "load_state", "log_event", "read_live",
           "save_state", "stop_requested", "tag_dir", "write_live", "open_tag", "tried_ref",
           "unrun_edits_note", "WAVE_KINDS", "model_of", "progress"]
