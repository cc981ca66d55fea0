"""The error of an input on the command line, apart from the dispatcher (:mod:`advkit.app.cli`) that
answers it, so that the subcommands it loads raise it without importing it back."""


class UsageError(ValueError):
    """An input on the command line cannot be used (a file, a device, an option's value). Subcommands
    raise it with a message that says what was wrong and what to do instead."""


__all__ = ["UsageError"]
