"""Results folders (writing and reading), and analysis of runs: TTA/CTA/RTA, tables and figures."""
