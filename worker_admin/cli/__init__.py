"""The graphile_worker command's subcommands, in small modules (GRAPHILE_WORKER.md section 7)."""
