"""How a job runs: its DDP ranks, its place among parallel jobs, and the launcher that runs multiruns side by side."""
