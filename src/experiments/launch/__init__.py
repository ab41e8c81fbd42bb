"""Launching jobs: side by side on the machine (the default multirun launcher), each job placed on its share."""
