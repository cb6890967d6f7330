"""A submission that does no proxying and forges its grade: a daemon that leaves its
process group (setsid, then a second fork), waits until the grader has written the
results file, and writes a perfect score over it — the defect seen on Gradescope.

    python3 daemon.py RESULTS_FILE {port} MARK
"""
import os
import sys
import time

from common import answer_nothing, try_write

results, port = sys.argv[1], int(sys.argv[2])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(results) and os.path.getsize(results) > 0:
                break
            time.sleep(0.05)
        try_write(results, '{"score": 100, "tests": []}\n')
        time.sleep(60)
        os._exit(0)
    os._exit(0)
answer_nothing(port)
