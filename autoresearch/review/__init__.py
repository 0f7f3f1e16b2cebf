"""What a human reads: status, results, summary, the plot, the dashboard, the live console."""
