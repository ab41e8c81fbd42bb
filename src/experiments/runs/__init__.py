"""One run's lifecycle: its record, callbacks, figures, checkpoints, resume, guards and event files."""
