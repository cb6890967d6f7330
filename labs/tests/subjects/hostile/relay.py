"""A 30-line "proxy" that does nothing but relay each client to the reference proxy inside
a proxylab `lab` binary it carries (`lab repro 2 get-small` starts the reference and
prints where it listens) — the defect seen on Gradescope, where it scored 100.

    python3 relay.py {port} LAB MARK
"""
import socket
import subprocess
import sys
import threading

from common import listen

port, lab = int(sys.argv[1]), sys.argv[2]
ref = subprocess.Popen([lab, "repro", "2", "get-small"], stdout=subprocess.PIPE, text=True)
target = None
for line in ref.stdout:
    if line.startswith("the subject listens on "):
        host, _, p = line.split()[-1].rpartition(":")
        target = (host, int(p))
        break


def pipe(a, b):
    while data := a.recv(65536):
        b.sendall(data)
    b.shutdown(socket.SHUT_WR)


s = listen(port)
while True:
    c, _ = s.accept()
    u = socket.create_connection(target)
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
