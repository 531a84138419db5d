"""The one exception type for mistakes a user can fix (bad recipe, missing file, wrong run).

The CLI turns it into one readable message on stderr and exit code 2; anything else is a bug
and keeps its traceback.

>>> raise UserError("model.units must be a positive integer; got 0")
Traceback (most recent call last):
...
textseq.errors.UserError: model.units must be a positive integer; got 0
"""


class UserError(Exception):
    """A problem in the user's input, with a message that says what to do about it."""
