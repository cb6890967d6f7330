"""A submission that reads what it should not (/etc/shadow, the points file, a classmate's
folder), says what it got, and then proxies like the tiny proxy.

    python3 reader.py {port} PATH... MARK
"""
import sys

from common import become_tiny, try_read

port = int(sys.argv[1])
for path in sys.argv[2:-1]:
    try_read(path)
become_tiny(port)
