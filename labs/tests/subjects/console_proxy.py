"""The tiny proxy with a console loop, as students add one to type commands into their
proxy while it runs: a thread that reads stdin line by line. Written the usual way, it never
expects end-of-file: on it, `readline()` returns "" at once, forever, and the loop spins,
printing "EOF" as fast as it can — what a Go proxy did when the grader gave it /dev/null.
The grader gives every program an open, silent stdin instead, so the loop just waits.

    python3 console_proxy.py PORT
"""
import os
import runpy
import sys
import threading


def console():
    while True:
        line = sys.stdin.readline()
        if not line:
            print("EOF", flush=True)
            continue
        print("command:", line.strip(), flush=True)


threading.Thread(target=console, daemon=True).start()
here = os.path.dirname(os.path.abspath(__file__))
sys.argv = [os.path.join(here, "tiny_proxy.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
