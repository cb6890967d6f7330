"""A submission that listens, then uses up one resource from a child process: `fork` (a
fork bomb), `memory` (a memory hog) or `disk` (fills its folder), each bounded here so a
broken sandbox cannot take the machine down with the test.

    python3 abuser.py {port} fork|memory|disk MARK
"""
import os
import sys
import time

from common import hold_everything

port, what = int(sys.argv[1]), sys.argv[2]
if os.fork() == 0:
    deadline = time.time() + 30
    if what == "fork":
        children = 0
        while children < 3000 and time.time() < deadline:
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
            except OSError:
                time.sleep(0.01)
    elif what == "memory":
        hoard = []
        while len(hoard) < 64 and time.time() < deadline:  # at most 4 GiB
            hoard.append(bytearray(64 << 20))
    elif what == "disk":
        written = 0
        while written < (512 << 20) and time.time() < deadline:
            try:
                with open(f"fill-{written}.bin", "wb") as f:
                    f.write(b"\0" * (16 << 20))
                    f.flush()
                    os.fsync(f.fileno())
                written += 16 << 20
            except OSError:
                time.sleep(0.01)
    time.sleep(30)
    os._exit(0)
hold_everything(port)
