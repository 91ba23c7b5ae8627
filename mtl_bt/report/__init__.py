"""Run and comparison reports: plots, report.md and self-contained report.html."""
