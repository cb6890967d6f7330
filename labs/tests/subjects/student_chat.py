"""A chat server as a good student writes it with socket and threading: a reader thread per
client that buffers until each newline, and a writer thread per client fed by a bounded
queue, so a client that stops reading is dropped instead of stalling the room.

The grader's proof grades it on lab 1 (labs/tests/proof/corpus.rs): as it is, it must score
100; with one --defect it must lose that defect's points and no others.

    python3 student_chat.py PORT [--defect NAME]

Defects:
  no-greeting       says nothing to a new client (it still announces arrivals and leavers)
  no-join           announces leavers but not arrivals
  relay-disconnect  relays !DISCONNECT to the others as a message and closes without a notice
  address-prefix    relays a line as "ADDRESS: text" (the sender's address, as many C and
                    Go servers do) instead of "[NAME] text"; everything else is right
  relay-half-line   when a client vanishes in the middle of a line, relays what it had of
                    that line, without a newline, and says nothing else of it: the half line
                    is glued to the next message (as an asyncio server that flushes its
                    buffer at EOF does)
"""
import queue
import socket
import sys
import threading

PORT = int(sys.argv[1])
DEFECT = sys.argv[sys.argv.index("--defect") + 1] if "--defect" in sys.argv else ""

members = {}  # socket -> Member
lock = threading.Lock()


class Member:
    def __init__(self, conn):
        self.conn = conn
        self.name = "guest"
        host, port = conn.getpeername()[:2]
        self.address = "%s:%d" % (host, port)
        self.out = queue.Queue(maxsize=256)
        threading.Thread(target=self.write_loop, daemon=True).start()

    def send(self, text):
        try:
            self.out.put_nowait(text.encode())
        except queue.Full:
            drop(self, "too slow")

    def write_loop(self):
        while True:
            data = self.out.get()
            if data is None:
                return
            try:
                self.conn.sendall(data)
            except OSError:
                return


def broadcast(sender, text):
    with lock:
        others = [m for m in members.values() if m is not sender]
    for m in others:
        m.send(text)


def drop(member, why):
    with lock:
        present = members.pop(member.conn, None)
    if present:
        try:
            member.out.put_nowait(None)
        except queue.Full:
            pass  # the writer is stuck in sendall(); shutting the socket down ends it
        try:
            member.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        quiet = (why == "disconnect" and DEFECT == "relay-disconnect") or (
            why == "gone" and DEFECT == "relay-half-line"
        )
        if not quiet:
            broadcast(member, "* %s left\n" % member.name)


def relayed(member, text):
    if DEFECT == "address-prefix":
        return "%s: %s\n" % (member.address, text)
    return "[%s] %s\n" % (member.name, text)


def serve(conn):
    member = Member(conn)
    with lock:
        members[conn] = member
    if DEFECT != "no-greeting":
        member.send("* welcome! %d online. Say /name NAME first.\n" % len(members))
    buf = b""
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                if line.startswith("/name "):
                    member.name = line[6:].strip() or member.name
                    if DEFECT != "no-join":
                        broadcast(member, "* %s joined\n" % member.name)
                elif line == "!DISCONNECT":
                    if DEFECT == "relay-disconnect":
                        broadcast(member, relayed(member, line))
                    drop(member, "disconnect")
                    return
                elif line:
                    broadcast(member, relayed(member, line))
        if buf and DEFECT == "relay-half-line":
            broadcast(member, relayed(member, buf.decode(errors="replace")).rstrip("\n"))
    except OSError:
        pass
    finally:
        drop(member, "gone")
        conn.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
