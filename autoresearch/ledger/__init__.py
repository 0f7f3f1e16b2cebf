"""The loop's records: results.tsv (the ledger of runs) and .autoresearch/<tag>/ (state, journal,
events). Written only by the decider; read by everything else."""
