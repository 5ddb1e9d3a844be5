"""Errors a user can cause (bad input files, bad names, impossible sizes).

The CLI prints them as one line, ``attnlab: error: <message>``, and exits with status 2: no traceback.
Messages name the problem and the fix.
"""


class UserError(Exception):
    """An error in what the user asked for, not in attnlab. The message is shown as is."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run. The message says how to continue (resume, or restart); the CLI prints it after
    ``attnlab: interrupted;`` and exits with status 130."""
