"""Lightning's ModelCheckpoint, with its `state_key` worked out once (conf/callbacks/default.yaml).

Lightning reads every callback's `state_key` on every hook call, to name the profiler's action, even with
no profiler; ModelCheckpoint builds its key anew each time from its settings (the repr of a dict), several
times per training step, for a value that cannot change once the callback exists (its monitor, mode and
save intervals are fixed in its constructor). Everything else is Lightning's, and so is the key: checkpoints
keep their callback state under the same name.
"""

from __future__ import annotations

import functools

from lightning.pytorch import callbacks


class ModelCheckpoint(callbacks.ModelCheckpoint):
    @functools.cached_property
    def state_key(self) -> str:  # type: ignore[override]
        return super().state_key
