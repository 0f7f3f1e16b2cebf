"""One exception type for failures the user can fix: the CLI prints its message on one line."""


class UserError(Exception):
    """An expected fault (bad flag, missing data, offline, missing key) with an actionable message.

    The message is the whole story: what failed and what to do next. The CLI prints it in red
    and exits with status 1; no traceback is shown.
    """
