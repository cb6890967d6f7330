"""A chat server as a student might write it first: one thread per client, every message
sent to the others with a blocking sendall() while holding the room's lock, and each recv()
taken as one message. The grader's proof grades it on lab 1 (labs/tests/proof.rs): it must
lose the long-lines and slow-reader checks and keep the others.

Usage: python3 naive_chat.py PORT
"""
import socket
import sys
import threading

clients = {}
lock = threading.Lock()


def broadcast(sender, text):
    with lock:
        for conn, name in list(clients.items()):
            if conn is not sender:
                try:
                    conn.sendall(text.encode())
                except OSError:
                    pass


def serve(conn):
    name = "guest"
    with lock:
        clients[conn] = name
    conn.sendall(b"welcome to the room\n")
    try:
        while True:
            data = conn.recv(1024)
            if not data:
                break
            for line in data.decode(errors="replace").splitlines():
                if line.startswith("/name "):
                    name = line[6:].strip()
                    with lock:
                        clients[conn] = name
                    broadcast(conn, "* %s joined\n" % name)
                elif line == "!DISCONNECT":
                    return
                elif line:
                    broadcast(conn, "[%s] %s\n" % (name, line))
    finally:
        with lock:
            clients.pop(conn, None)
        conn.close()
        broadcast(None, "* %s left\n" % name)


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
