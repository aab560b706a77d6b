"""The one error type the project raises for problems a user can fix."""


class HarnessError(Exception):
    """A problem with the user's input or environment.

    The message says what is wrong and how to fix it; the CLI prints it
    without a traceback and exits non-zero.
    """
