"""The text every LLM agent gets: the research program, the ledger so far, the code, the task.

API agents get SYSTEM_PROMPT (the answer format) plus build_context(); CLI agents, which edit
train.py themselves, get cli_prompt(): the same context with instructions for a file-editing agent.
"""

from __future__ import annotations

from autoresearch.agents.base import AgentRequest
from autoresearch.memory.literals import profile_overrides
from autoresearch.model import Row
from autoresearch.redact import sanitize
from autoresearch.target import DEFAULT, Target, listed

RECENT_ROWS = 10  # the latest runs in full; the digest covers the whole night in brief
DESCRIPTION_WIDTH = 110  # results-table description column, truncated beyond

ROLE = """\
You are an autonomous ML researcher. You improve train.py, a small GPT pretraining script, one
experiment at a time. Each experiment trains for a fixed wall-clock budget and is scored by
val_bpb (validation bits per byte): lower is better. Everything except train.py is fixed (data,
tokenizer, evaluation, time budget, installed packages). A change is kept only if it beats the
best val_bpb by more than the noise threshold; otherwise it is reverted. A crash wastes a run, so
keep the code correct. Make one focused, well-motivated change per experiment."""

# The role for a target of its own (target.py): the same loop, its file and its metric
TARGET_ROLE = """\
You are an autonomous researcher. You improve {file}, one experiment at a time. Each experiment
runs the project's fixed evaluation and is scored by {metric}: {direction} is better. Everything
except {file} is fixed (the evaluation, its data, the time limit, installed packages). A change
is kept only if it beats the best {metric} by more than the noise threshold; otherwise it is
reverted. A crash wastes a run, so keep the code correct. Make one focused, well-motivated change
per experiment."""

SYSTEM_PROMPT = ROLE + """

Answer in exactly this format (anything else in your answer is ignored):

DESCRIPTION: <one line: what you changed and why>
HYPOTHESIS: <one line: why you expect it to lower val_bpb>
<<<<<<< SEARCH
<lines copied exactly from the current train.py>
=======
<the lines that replace them>
>>>>>>> REPLACE

Rules for the edit blocks:
- Each SEARCH must match exactly one place in train.py, whole lines, character for character
  (indentation and spaces included). Include enough lines to make it unique, but keep it short.
- Use several blocks for changes in several places; they are applied in order, all or nothing.
- An empty REPLACE deletes the searched lines.
"""

CLI_INSTRUCTIONS = ROLE + """

Edit train.py in the current directory with your file-editing tools. Change no other file, do not
run training or long commands, do not commit. When you are done, end your final message with two
lines of the form:
DESCRIPTION: <one line: what you changed and why>
HYPOTHESIS: <one line: why you expect it to lower val_bpb>
"""


def role(target: Target) -> str:
    """Who the agent is: the LLM-pretraining researcher, or the same for a target's own file
    and metric."""
    if not target.custom:
        return ROLE
    return TARGET_ROLE.format(file=listed(target.editable), metric=target.metric.name,
                              direction=target.metric.direction)


def for_target(text: str, target: Target) -> str:
    """A default-target instruction (the answer format, the CLI rules, a follow-up) worded for
    `target`; with several editable files each edit block names its file on a FILE line."""
    if not target.custom:
        return text
    text = text.replace("lower val_bpb", f"{goal(target)} {target.metric.name}")
    if len(target.editable) > 1:
        text = text.replace("<<<<<<< SEARCH\n", f"FILE: <the file the blocks below edit: one "
                            f"of {', '.join(target.editable)}>\n<<<<<<< SEARCH\n", 1).replace(
            "the current train.py", "the current version of that file").replace(
            "one place in train.py,", "one place in the file its FILE line names,")
    return text.replace("train.py", listed(target.editable))


def goal(target: Target) -> str:
    """The verb of an improvement: lower val_bpb, raise accuracy."""
    return "lower" if target.metric.direction == "lower" else "raise"


def system_prompt(target: Target = DEFAULT) -> str:
    """The API agents' system prompt: the role and the answer format."""
    return role(target) + for_target(SYSTEM_PROMPT.removeprefix(ROLE), target)


def results_table(rows: list[Row], limit: int = RECENT_ROWS, target: Target = DEFAULT) -> str:
    """The last `limit` runs as a compact fixed-width table, most recent last (values as the
    metric's own, rows hold its loss)."""
    if not rows:
        return "(no runs yet)"
    metric = target.metric
    lines = [f"({len(rows) - limit} earlier runs not shown)"] if len(rows) > limit else []
    lines.append(f"{'exp':>4}  {'commit':7}  {metric.name:>8}  {'mem_gb':>6}  {'status':7}  "
                 f"{'kind':10}  description")
    for row in rows[-limit:]:
        bpb = "-" if row.is_crash else f"{metric.value(row.val_bpb):.6f}"
        mem = "-" if row.is_crash else f"{row.memory_gb:.1f}"
        exp = "-" if row.experiment is None else str(row.experiment)
        desc = sanitize(row.description + (f" [{row.reason}]" if row.reason else ""),
                        DESCRIPTION_WIDTH)
        lines.append(f"{exp:>4}  {row.commit[:7]:7}  {bpb:>8}  {mem:>6}  {row.status:7}  "
                     f"{row.kind or '-':10}  {desc}")
    return "\n".join(lines)


def build_context(request: AgentRequest) -> str:
    """program.md, the whole night in brief, the latest runs, what the other workers try now,
    the crash to fix or the change to port (if any), the editable file, and the task."""
    target = request.target
    name, file = target.metric.name, listed(target.editable)
    parts = [f"# Research program ({target.program})\n", request.program.strip(), "\n\n"]
    if request.best_val_bpb is not None:
        parts.append(f"Best {name} so far: {target.metric.value(request.best_val_bpb):.6f}.")
        if request.noise_threshold is not None:
            parts.append(f" Smallest gain the loop confirms reliably: {request.noise_threshold:.6f}"
                         " (a change is kept when its runs, compared with the code it was made"
                         " on, show its gain with 95 % confidence; smaller real gains are kept"
                         " less often).")
        parts.append("\n\n")
    if request.digest:
        parts += ["# The night so far: every run, summarised\n", request.digest.strip(), "\n\n"]
    parts.append(f"# Latest runs (most recent last; {target.metric.direction} {name} is "
                 f"better)\n")
    parts += ["```\n", results_table(request.history, RECENT_ROWS, target), "\n```\n\n"]
    if request.inflight:
        parts.append("# Queued or running right now (do not duplicate these)\n")
        parts += [f"- worker {f.worker}: {sanitize(f.description, DESCRIPTION_WIDTH)}"
                  f"{' [' + ', '.join(f.changes) + ']' if f.changes else ''}\n"
                  for f in request.inflight]
        parts.append("\n")
    if request.feedback:
        parts += ["# Note\n", request.feedback.strip(), "\n\n"]
    if request.plateau:
        parts += ["# Plateau\n", f"The last {request.plateau} experiments in a row were not kept."
                  " Try a different kind of change: combine near-misses from the summary above,"
                  " make a structural change, or take an untried idea from program.md.\n\n"]
    if request.crash_log is not None:
        parts += ["# The last run crashed: tail of its log\n",
                  "```\n", request.crash_log.strip(), "\n```\n\n"]
    if request.port is not None:
        port = request.port
        parts += [f"# A change to port: #{port.n} ({sanitize(port.description)})\n",
                  "It beat the code it was made on, but the best has moved since, and the "
                  f"three-way merge of {file} conflicts. Its change, as a diff against its own "
                  "parent:\n", "```diff\n", port.diff.rstrip("\n"), "\n```\n\n"]
    for path, text in request.files.items():
        fence = "python" if path.endswith(".py") or not target.custom else ""
        parts += [f"# Current {path}\n", f"```{fence}\n", text.rstrip("\n"), "\n```\n"]
    parts += [overrides_line(request), "\n"]
    parts.append("# Task\n")
    if request.crash_log is not None:
        parts.append(f"Fix {file} so that it runs: repair the cause of the crash above, keeping "
                     "the experiment's idea if it is sound.")
    elif request.port is not None:
        parts.append(f"Apply the same change to the current {file} above (the new best), "
                     "adapting it where the code has moved. Change nothing else.")
    else:
        parts.append(f"Propose one change to {file} that you expect to {goal(target)} {name}. "
                     "Do not repeat an experiment from the summary unless you have a new reason "
                     "to.")
    return "".join(parts) + "\n"


def overrides_line(request: AgentRequest) -> str:
    """One line naming the constants the runs' profile replaces, so that no run is spent on a
    top-level value that never takes effect; "" when there are none (or train.py is broken)."""
    try:
        fixed = profile_overrides(request.train_py, request.profile)
    except SyntaxError:
        return ""
    if not fixed:
        return ""
    profile = request.profile.partition("@")[0]
    return (f"The runs use the `{profile}` profile: train.py's `if PROFILE == ...` block replaces"
            f" {', '.join(fixed)}, so changing their top-level values has no effect.\n")


def cli_prompt(request: AgentRequest) -> str:
    """The whole prompt for a CLI agent (Claude Code, Codex) that edits the file itself."""
    target = request.target
    return role(target) + for_target(CLI_INSTRUCTIONS.removeprefix(ROLE), target) + "\n" + \
        build_context(request)
