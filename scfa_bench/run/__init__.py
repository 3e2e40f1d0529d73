"""Running a suite: the options of a run, checked once (`request`), the run loop (`loop`), its
rows (`rows`), progress and ETA (`progress`), the CPU-time estimate that guards interpreter
runs (`estimate`), new file names (`paths`), the points `profile` takes (`profile`), and the
sharded ways to run (`sharded`: plan, worker, local cards, Slurm, the supervisor)."""
