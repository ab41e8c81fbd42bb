"""What happens to a run while it trains: its record, guards and how it ends."""
