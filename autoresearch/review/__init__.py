"""What a human reads: status, results, summary, the plot, the dashboard, the live console."""

# What the CLI uses: its commands (review_cli, views) and the live console
__all__ = ["review_cli", "views", "make_console"]
