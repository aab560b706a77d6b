"""The one error type the project raises for problems a user can fix, and how database failures become one."""


class HarnessError(Exception):
    """A problem with the user's input or environment.

    The message says what is wrong and how to fix it; the CLI prints it
    without a traceback and exits non-zero.
    """


def database_error(path: object, error: Exception, *, damaged_fix: str) -> HarnessError:
    """A HarnessError for an SQLite failure on the file at ``path``: what went wrong, then what to do.

    ``damaged_fix`` says how to go on when the file itself is damaged, which depends on what it holds.
    """
    text = str(error)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
        return HarnessError(f"{path} is damaged ({text}); nothing was changed. {damaged_fix}")
    if "readonly" in lowered or "read-only" in lowered:
        return HarnessError(f"{path} cannot be written ({text}); check the permissions of the file and its directory")
    if "locked" in lowered or "busy" in lowered:
        return HarnessError(f"{path} is busy in another process ({text}); wait for it to finish and run again")
    if "full" in lowered:
        return HarnessError(f"the disk holding {path} is full ({text}); free some space and run again to resume")
    return HarnessError(f"cannot use {path}: {text}")
