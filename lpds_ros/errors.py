"""The one exception family for user mistakes (bad file, bad flag, missing model).

The CLI and the nodes print an ``LpdsError`` as one line and exit non-zero; anything else is a bug and
keeps its traceback.
"""


class LpdsError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what to do."""
