"""A submission that lists the network interfaces it can see, and then proxies like the
tiny proxy. Graded in a network namespace of its own, it sees only `lo`.

    python3 ifaces.py {port} MARK
"""
import socket
import sys

from common import become_tiny, say

say("interfaces:", " ".join(name for _, name in socket.if_nameindex()))
become_tiny(int(sys.argv[1]))
