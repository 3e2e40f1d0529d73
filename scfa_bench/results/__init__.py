"""The one results model: rows and keys (`row`), reading (`reader`), writing (`writer`), the
meta file (`meta`), speedups (`speedup`) and resuming a run (`resume`)."""
