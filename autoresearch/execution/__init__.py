"""Running train.py once and reading what it printed."""

# What the other packages use, from the module that defines it (sandbox as a module):
# executor.py, gpus.py, local.py, parse.py, procs.py, ray.py, sandbox.py
__all__ = ["Executor", "RunResult", "RunSpec", "Slot", "plan_slots", "plan_workers",
           "LocalExecutor", "bytecode_warning", "LocalConfig", "RayConfig", "FIXABLE_REASONS",
           "LOST", "Progress", "TAMPER", "last_error", "log_tail", "parse_summary", "read_run",
           "read_target_run", "split_lines", "kill_group", "kill_marked", "pid_alive",
           "reaper_env", "supervised", "sandbox", "run_view"]
