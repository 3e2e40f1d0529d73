"""A suite in shards run by other processes and merged: the deterministic shards (`plan`), one
shard into its part CSV (`worker`), the run's files and state (`state`), worker processes on
the local cards (`local`, with `gpus` and `display`), Slurm array tasks (`slurm`), and the
entry points the command line calls (`supervisor`)."""
