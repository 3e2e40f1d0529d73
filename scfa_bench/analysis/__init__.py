"""Reading finished runs: statistics, the end-of-run summary, plots, the report, the gate,
profile stage tables, clock comparison."""
