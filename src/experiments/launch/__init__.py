"""How a job runs: its DDP ranks and its place among parallel jobs."""
