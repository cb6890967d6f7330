"""What the hostile submissions share: a proxy that answers nothing (each check fails at
once), and a way to become the tiny GET-only proxy after the mischief, so that what the
submission earns honestly is known (60 on lab 2)."""
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def say(*words):
    print(*words, flush=True)


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def answer_nothing(port):
    s = listen(port)
    while True:
        c, _ = s.accept()
        c.close()


def hold_everything(port):
    """Listens and never answers: each check waits on it until its step runs out (or until
    the grader stops the program)."""
    s = listen(port)
    held = []
    while True:
        held.append(s.accept()[0])


def become_tiny(port):
    """Replaces this process with the tiny proxy (tiny.py beside this file)."""
    os.execv(sys.executable, [sys.executable, os.path.join(HERE, "tiny.py"), str(port)])


def try_write(path, text="forged\n"):
    try:
        with open(path, "w") as f:
            f.write(text)
        say("WROTE", path)
    except OSError as e:
        say("could not write", path, type(e).__name__)


def try_read(path):
    try:
        if os.path.isdir(path):
            say("LISTED", path, sorted(os.listdir(path)))
        else:
            with open(path, "rb") as f:
                f.read(64)
            say("READ", path)
    except OSError as e:
        say("could not read", path, type(e).__name__)
