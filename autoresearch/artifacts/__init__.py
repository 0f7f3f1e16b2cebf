"""What a run leaves besides its row: run directories, weights, text samples."""

# What the other packages use, from the module that defines it:
# aftercare.py, checkpoints.py, sample.py
__all__ = ["tidy_weights", "COMMIT_PREFIX", "RUNS_DIR", "WEIGHTS", "resolve_run", "run_dir_for",
           "run_path", "DEFAULT_MAX_TOKENS", "DEFAULT_PROMPT", "DEFAULT_SEED",
           "DEFAULT_TEMPERATURE", "DEFAULT_TOP_K", "load_model", "pick_device", "sample_run"]
