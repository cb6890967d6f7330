"""A forward proxy as a good student writes it with socket and threading: one thread per
client, keep-alive, every method with its body (Content-Length or chunked), hop-by-hop
headers removed, Via added, 400/403/502 answered, CONNECT tunnels with a port policy, a
blacklist re-read when it changes, an access log, and a small cache (max-age, no-store,
private, ETag revalidation, Vary, invalidation by unsafe methods, an object limit and LRU
eviction).

The grader's proof grades it (labs/tests/proof/corpus.rs): as it is, it must score 100 on
labs 2 to 5; with one --defect it must lose that defect's points and no others.

    python3 student_proxy.py PORT [--rules FILE] [--log FILE] [--defect NAME]

Defects (each one mistake students make):
  absolute        forwards the absolute URL (GET http://host/path) instead of the path
  twice           sends every request to the origin twice (relays the first answer)
  noisy           writes 100 KiB to stderr per request (a logging mistake that fills pipes)
  http10          HTTP/1.0 only: one request per connection, HTTP/1.0 to the origin
  no-headers      forwards none of the client's headers
  always-400      answers 400 Bad Request to everything
  one-recv        takes one recv() as the whole request head
  refuse-connect  answers 403 to every CONNECT
  substring       blacklists by substring of the URL instead of by host name
  no-cache        caches nothing
  fifo            evicts the oldest stored object instead of the least recently used
  flip-byte       changes byte 4242 of every body longer than that (a relay that mangles
                  data; the HTML report's test marks the byte)
  waits-for-close reads each response to the end of the connection instead of by its
                  length, as a CS:APP-style loop over rio_readlineb does, while it asks
                  for HTTP/1.1 keep-alive upstream (the origin keeps the connection open)
  drop-query      forwards the path without its query (GET /bytes/10 for /bytes/10?x=1)
  bare-html       answers its own errors (400, 403, 502) with an HTML page and no status
                  line, then closes
  unframed-400    answers a malformed request with a 400 that has no Content-Length, and
                  keeps the connection open (so the client cannot tell where it ends)
  text-only       passes bodies through as text, as a Java proxy that reads them with
                  readLine() into Strings does: bytes that are not UTF-8 come out as U+FFFD
                  (it is concurrent and caches well: binary bodies are all it gets wrong)

To keep the grader's tests offline it resolves only localhost and IP literals (like the
reference's --offline): any other name gets 502 without a DNS query.
"""
import os
import socket
import sys
import threading
import time
from collections import OrderedDict

ARGS = sys.argv[1:]
PORT = int(ARGS[0])


def option(name):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else None


DEFECT = option("--defect") or ""
RULES = option("--rules")
LOG = option("--log")
HOP = {"connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
       "transfer-encoding", "proxy-authorization", "proxy-authenticate"}
log_lock = threading.Lock()


class Conn:
    """A socket with a read buffer: lines, exact counts, until close."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def more(self):
        data = self.sock.recv(65536)
        self.buf += data
        return len(data)

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536 or not self.more():
                return None
            if DEFECT == "one-recv":
                break
        if b"\r\n\r\n" not in self.buf:
            head, self.buf = self.buf, b""
            return head
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def line(self):
        while b"\r\n" not in self.buf:
            if not self.more():
                raise EOFError
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            if not self.more():
                raise EOFError
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def rest(self):
        while self.more():
            pass
        data, self.buf = self.buf, b""
        return data


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for l in lines[1:]:
        if ":" not in l:
            raise ValueError("bad header")
        k, v = l.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


def get(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def read_body(conn, headers, out):
    """Reads a body framed by `headers` from conn; returns it de-chunked. `out`, when
    given, receives the bytes as they came (chunked framing kept)."""
    te = (get(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        body = b""
        while True:
            size_line = conn.line()
            size = int(size_line.split(b";")[0], 16)
            if out:
                out(size_line + b"\r\n")
            if size == 0:
                while True:
                    trailer = conn.line()
                    if out:
                        out(trailer + b"\r\n")
                    if not trailer:
                        return body
            data = conn.exactly(size)
            conn.exactly(2)
            body += data
            if out:
                out(data + b"\r\n")
    n = int(get(headers, "content-length") or 0)
    data = conn.exactly(n)
    if out and data:
        out(data)
    return data


def answer(client, status, reason, text, close=True):
    if DEFECT == "bare-html":
        client.sendall(("<html><body><h1>%d %s</h1><p>%s</p></body></html>\n"
                        % (status, reason, text)).encode())
        client.shutdown(socket.SHUT_WR)
        return
    if DEFECT == "unframed-400" and status == 400:
        client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n")
        while client.recv(4096):  # and keeps the connection open until the client leaves
            pass
        return
    body = (text + "\n").encode()
    client.sendall(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                    % (status, reason, len(body), "Connection: close\r\n" if close else "")).encode() + body)


def resolve(host):
    if host == "localhost":
        return "127.0.0.1"
    socket.inet_aton(host)  # an IP literal, or an error: never a DNS query
    return host


rules_cache = {"mtime": None, "lines": []}


def blacklist():
    if not RULES:
        return []
    try:
        # Whole seconds, as many students compare them: the grader dates the file it gives
        # back, so that a change made in the same second as the file is still seen.
        mtime = int(os.stat(RULES).st_mtime)
    except OSError:
        return []
    if mtime != rules_cache["mtime"]:
        with open(RULES) as f:
            rules_cache["lines"] = [l.strip().lower() for l in f
                                    if l.strip() and not l.startswith("#")]
        rules_cache["mtime"] = mtime
    return rules_cache["lines"]


def blocked(host, url):
    host = host.lower()
    for rule in blacklist():
        if DEFECT == "substring":
            if rule.lstrip("*.") in url:
                return True
        elif rule.startswith("*."):
            if host == rule[2:] or host.endswith(rule[1:]):
                return True
        elif host == rule:
            return True
    return False


def log(client_addr, method, url, status):
    if not LOG:
        return
    with log_lock, open(LOG, "a") as f:
        f.write("%s %s %s %s\n" % (client_addr[0], method, url, status))


# The cache: URL -> list of variants, LRU order kept by an OrderedDict of keys.
CACHE_LIMIT = 1 << 20
OBJECT_LIMIT = 100 * 1024
cache = OrderedDict()
cache_lock = threading.Lock()


def directives(value):
    out = {}
    for part in (value or "").split(","):
        part = part.strip().lower()
        if part:
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


def cache_key(url, vary_headers, req_headers):
    return (url,) + tuple((h, get(req_headers, h) or "") for h in vary_headers)


def lookup(url, req_headers):
    with cache_lock:
        for key, entry in cache.items():
            if key[0] == url and key == cache_key(url, entry["vary"], req_headers):
                if DEFECT != "fifo":
                    cache.move_to_end(key)
                return key, entry
    return None, None


def store(key, entry):
    if DEFECT == "no-cache" or len(entry["body"]) > OBJECT_LIMIT:
        return
    with cache_lock:
        cache.pop(key, None)
        cache[key] = entry
        while sum(len(e["body"]) for e in cache.values()) > CACHE_LIMIT:
            cache.popitem(last=False)


def invalidate(url):
    with cache_lock:
        for key in [k for k in cache if k[0] == url]:
            del cache[key]


def fresh(entry):
    return time.time() - entry["stored"] < entry["max_age"]


def send_response(client, status_line, headers, body, close):
    out = [status_line]
    for k, v in headers:
        if k.lower() not in HOP and k.lower() != "content-length":
            out.append("%s: %s" % (k, v))
    out.append("Content-Length: %d" % len(body))
    if close:
        out.append("Connection: close")
    client.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)


def tunnel(client, client_conn, target, addr):
    host, _, port = target.rpartition(":")
    port = int(port) if port.isdigit() else 0
    if DEFECT == "refuse-connect" or not (port == 443 or 1024 <= port <= 65535):
        answer(client, 403, "Forbidden", "CONNECT to that port is not allowed")
        return
    if blocked(host, target):
        answer(client, 403, "Forbidden", "blocked")
        log(addr, "CONNECT", target, 403)
        return
    try:
        upstream = socket.create_connection((resolve(host), port), timeout=10)
        upstream.settimeout(None)
    except (OSError, ValueError):
        answer(client, 502, "Bad Gateway", "cannot reach " + target)
        return
    client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    log(addr, "CONNECT", target, 200)
    if client_conn.buf:
        upstream.sendall(client_conn.buf)

    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    t.start()
    pipe(client, upstream)
    t.join()
    upstream.close()


def exchange(client, conn, addr):
    """Serves one request; returns False when the client connection must close."""
    head = conn.head()
    if head is None:
        return False
    if DEFECT == "noisy":
        sys.stderr.write("request from %s: %r\n%s\n" % (addr, head[:60], "x" * 100 * 1024))
        sys.stderr.flush()
    try:
        request_line, headers = parse_head(head)
        method, url, version = request_line.split(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(version)
    except ValueError:
        answer(client, 400, "Bad Request", "malformed request")
        return False
    if DEFECT == "always-400":
        answer(client, 400, "Bad Request", "bad request")
        return False
    if method == "CONNECT":
        tunnel(client, conn, url, addr)
        return False
    if not url.startswith("http://"):
        answer(client, 400, "Bad Request", "absolute URL expected")
        return False
    hostport, _, path = url[7:].partition("/")
    path = "/" + path
    host, _, port = hostport.partition(":")
    if blocked(host, url):
        answer(client, 403, "Forbidden", "blocked by the blacklist")
        log(addr, method, url, 403)
        return False
    body = read_body(conn, headers, None)
    keep = (version == "HTTP/1.1" and (get(headers, "connection") or "").lower() != "close"
            and DEFECT != "http10")
    named = {h.strip().lower() for h in (get(headers, "connection") or "").split(",")}

    # The cache.
    key, entry = (None, None) if method != "GET" else lookup(url, headers)
    if entry and fresh(entry):
        send_response(client, entry["status"], entry["headers"], entry["body"], not keep)
        log(addr, method, url, "HIT")
        return keep

    forward = [] if DEFECT == "no-headers" else [
        (k, v) for k, v in headers
        if k.lower() not in HOP and k.lower() not in named
        and k.lower() not in ("host", "content-length")]
    forward = [("Host", hostport)] + forward + [("Via", "1.1 student-proxy")]
    if DEFECT != "waits-for-close":
        forward.append(("Connection", "close"))
    if entry and entry["etag"]:
        forward.append(("If-None-Match", entry["etag"]))
    if body or method in ("POST", "PUT"):
        forward.append(("Content-Length", str(len(body))))
    target = url if DEFECT == "absolute" else path
    if DEFECT == "drop-query":
        target = path.split("?", 1)[0]
    proto = "HTTP/1.0" if DEFECT == "http10" else "HTTP/1.1"
    request = ("%s %s %s\r\n" % (method, target, proto)
               + "".join("%s: %s\r\n" % kv for kv in forward) + "\r\n").encode("latin-1") + body

    try:
        for attempt in range(2 if DEFECT == "twice" else 1):
            upstream = socket.create_connection((resolve(host), int(port or 80)), timeout=10)
            upstream.sendall(request)
            if attempt == 0:
                first = upstream
            else:
                upstream.close()
        upstream = Conn(first)
        rhead = upstream.head()
        status_line, rheaders = parse_head(rhead)
        status = int(status_line.split(" ")[1])
        if method == "HEAD" or status in (204, 304) or status < 200:
            rbody = b""
        elif DEFECT == "waits-for-close":
            rbody = upstream.rest()
        elif get(rheaders, "transfer-encoding") or get(rheaders, "content-length"):
            rbody = read_body(upstream, rheaders, None)
        else:
            rbody = upstream.rest()
        first.close()
    except (OSError, ValueError, EOFError):
        answer(client, 502, "Bad Gateway", "cannot reach " + hostport)
        log(addr, method, url, 502)
        return False

    if status == 304 and entry:
        entry["stored"] = time.time()
        status_line, rheaders, rbody = entry["status"], entry["headers"], entry["body"]
        status = 200
    cc = directives(get(rheaders, "cache-control"))
    if method == "GET" and status == 200 and "no-store" not in cc and "private" not in cc:
        vary = [h.strip().lower() for h in (get(rheaders, "vary") or "").split(",") if h.strip()]
        max_age = int(cc.get("max-age", "0") or 0) if cc.get("max-age", "0").isdigit() else 0
        etag = get(rheaders, "etag")
        if max_age > 0 or etag:
            store(cache_key(url, vary, headers), {
                "status": status_line, "headers": rheaders, "body": rbody, "vary": vary,
                "stored": time.time(), "max_age": max_age, "etag": etag})
    if method not in ("GET", "HEAD") and 200 <= status < 400:
        invalidate(url)
    if DEFECT == "text-only":
        rbody = rbody.decode("utf-8", "replace").encode("utf-8")
    if DEFECT == "flip-byte" and len(rbody) > 4242:
        rbody = rbody[:4242] + bytes([rbody[4242] ^ 0xFF]) + rbody[4243:]
    if DEFECT == "http10":
        status_line = "HTTP/1.0" + status_line[8:]
    if method == "HEAD":
        out = [status_line] + ["%s: %s" % (k, v) for k, v in rheaders if k.lower() not in HOP]
        client.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
    else:
        send_response(client, status_line, rheaders, rbody, not keep)
    log(addr, method, url, status)
    return keep


def serve(client, addr):
    conn = Conn(client)
    try:
        while exchange(client, conn, addr):
            pass
    except (OSError, EOFError, ValueError):
        pass
    finally:
        client.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(128)
    print("student proxy on port %d%s" % (PORT, " (defect: %s)" % DEFECT if DEFECT else ""),
          flush=True)
    while True:
        client, addr = listener.accept()
        threading.Thread(target=serve, args=(client, addr), daemon=True).start()


if __name__ == "__main__":
    main()
