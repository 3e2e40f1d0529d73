"""Reading results: statistics, summaries, plots, reports, the gate, profiles."""
