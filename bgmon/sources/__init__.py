"""Sources: where tasks live and how their files are read."""
