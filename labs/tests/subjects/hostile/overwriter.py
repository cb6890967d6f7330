"""A submission that writes over what grades it — the autograder's script, the points
file, the grader itself, the results — and then proxies like the tiny proxy.

    python3 overwriter.py {port} PATH... MARK
"""
import sys

from common import become_tiny, try_write

port = int(sys.argv[1])
for path in sys.argv[2:-1]:
    try_write(path, "#!/bin/sh\necho '{\"score\": 100}'\n")
become_tiny(port)
