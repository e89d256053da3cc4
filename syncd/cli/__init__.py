"""The command line: a thin layer over the same library the daemon uses."""
