"""Placeholder replaced below."""

from hydra.experimental.callback import Callback


class SweepReportCallback(Callback):
    pass
