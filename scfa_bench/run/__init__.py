"""Running a suite in more than one process: shards of the grid, local GPU workers, Slurm
array jobs, and merging their part files into one results CSV."""
