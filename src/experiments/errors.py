"""Errors that mean "the user asked for something we cannot do", reported as one line, not a traceback."""


class ExperimentError(Exception):
    """Base class: the message is the whole story (what is wrong and how to fix it)."""


class ConfigError(ExperimentError):
    """A config value is invalid; the message names the key."""


class DataError(ExperimentError):
    """Dataset files are missing, unreadable or inconsistent; the message names the files."""


class CheckpointError(ExperimentError):
    """A checkpoint is missing, corrupt or does not match the model config; the message names the file."""


class TrainingDiverged(ExperimentError):
    """The loss became NaN/inf; the message names step, epoch and learning rate."""


class RunInterrupted(ExperimentError):
    """Ctrl-C or SIGTERM stopped training after saving a checkpoint; the run can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
