"""Worker processes of a command line that stop with it."""

import os
import threading

# A worker process checks this often (seconds) whether its parent lives.
PARENT_CHECK_SECONDS = 0.5


def watch_parent(parent):
    """Initializer of worker processes (`ProcessPoolExecutor(initializer=
    watch_parent, initargs=(os.getpid(),))`): ignore Ctrl-C (the main
    process stops its workers) and exit as soon as the parent process is
    gone (e.g. killed with SIGKILL) instead of waiting forever for work.
    It lives here, in a module that imports nothing heavy, so that a
    worker does not import TensorFlow to run it."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
