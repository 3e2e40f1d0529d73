"""Running a suite: the run loop (`loop`) and its progress display (`progress`)."""
