"""A tiny forward proxy, as a student might write it first: GET only, one thread per
client, one request per connection, no cache, no CONNECT. The grader's proof grades it
(labs/tests/proof.rs) and checks it gets the partial score it deserves.

Usage: python3 tiny_proxy.py PORT
"""
import socket
import sys
import threading


def answer(client, status, text):
    body = (text + "\n").encode()
    client.sendall(
        b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, text.encode(), len(body))
        + body
    )


def serve(client):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _ = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            answer(client, 400, "Bad Request")
            return
        method, url, _ = parts
        if method != "GET":
            answer(client, 501, "Not Implemented")
            return
        if not url.startswith("http://"):
            answer(client, 400, "Bad Request")
            return
        rest = url[len("http://"):]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        try:
            # Offline, as the grader's tests must be: localhost and IP literals only.
            ip = "127.0.0.1" if host == "localhost" else host
            socket.inet_aton(ip)
            upstream = socket.create_connection((ip, int(port or 80)), timeout=10)
        except OSError:
            answer(client, 502, "Bad Gateway")
            return
        headers = [l for l in lines[1:] if l and not l.lower().startswith("host:")]
        request = "GET /%s HTTP/1.0\r\nHost: %s\r\n%s\r\n\r\n" % (path, hostport, "\r\n".join(headers))
        upstream.sendall(request.encode("latin-1"))
        while True:
            chunk = upstream.recv(65536)
            if not chunk:
                break
            client.sendall(chunk)
        upstream.close()
    finally:
        client.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(128)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
