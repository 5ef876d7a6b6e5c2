"""bgmon's exit statuses, in one place (the CLI's help lists them for users)."""

EXIT_OK = 0
EXIT_FAULTS = 1  # --once: a task is struggling, stuck or failed
EXIT_FAILED = 1  # a command, or an action it ran, failed
EXIT_USAGE = 2  # a person must act: a mistake on the command line, a bad config, …
EXIT_TIMEOUT = 124  # `bgmon wait` gave up (as timeout(1) does)
EXIT_INTERRUPTED = 130  # ctrl-C (128 + SIGINT)
