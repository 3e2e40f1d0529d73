"""Running a suite: the run loop (`loop`) and its progress display (`progress`); in more than
one process: shards of the grid (`shard`), the shard worker (`worker`), every local GPU
(`workers`, with `gpus`, `parts`, `display`), Slurm array jobs (`slurm`), and the entry points
the command line calls (`many`)."""
