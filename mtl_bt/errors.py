"""Exception types. `UserError` subclasses are the user's to fix: the CLI prints
their message and exits with code 2, no traceback."""


class UserError(Exception):
    """Bad input, config or environment; the message says what to do."""


class PluginError(UserError):
    """A plugin failed to load, register or validate."""


class ConfigError(UserError):
    """A config file or value is invalid."""


class DataError(UserError):
    """Market data is missing, malformed or inconsistent."""


class CheckpointError(UserError):
    """A model file is corrupt or does not match the data/config."""


class OutputError(UserError):
    """An output or cache location is unusable, or another run owns it."""


class DiskFullError(OutputError):
    """The file system filled up while writing ``path`` (``free`` bytes left)."""

    def __init__(self, message: str, path: object = None, free: int = 0) -> None:
        super().__init__(message)
        self.path, self.free = path, free
