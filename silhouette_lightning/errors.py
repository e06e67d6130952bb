"""User-facing errors.

Anything a user can cause through a config value or their data raises a subclass of
:class:`ConfigError`. The CLI turns these into a one-paragraph message and exit code 2 instead of a
stack trace, so the message itself must say what was wrong and what to do about it.
"""


class ConfigError(ValueError):
    """A configuration value or an input the user controls is invalid."""


class DatasetNotFoundError(ConfigError, FileNotFoundError):
    """A dataset is not where the config says it is (and may not be downloaded)."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite during training (the run stops instead of training on)."""
