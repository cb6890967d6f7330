/*
 * A proxy as CS:APP's Proxy Lab has students write it (written for proxylab's tests, in
 * that style, with the book's robust I/O): one thread per connection, GET only (501
 * otherwise), HTTP/1.0 to the origin with the headers the handout prescribes (Host,
 * User-Agent, Connection: close, Proxy-Connection: close) and the client's other headers
 * after them, the response relayed until the origin closes, then the connection closed.
 *
 * Like most such programs it does not ignore SIGPIPE: a write to a client that has gone
 * kills the whole process. A grader that opens and closes an empty connection to see
 * whether it is up kills it that way (it answers the empty request with 400). The grader's
 * proof compiles it with the system's cc and grades it (labs/tests/proof/corpus.rs).
 *
 * To keep the tests offline it resolves only localhost and IP literals: other names get
 * 502 without a DNS query.
 *
 *   cc -O2 -pthread -o proxy csapp_proxy.c && ./proxy PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXLINE 8192
#define MAXBUF 8192
#define MAXHEADERS 100

static const char *user_agent_hdr =
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:10.0.3) Gecko/20120305 Firefox/10.0.3\r\n";

/* ---- CS:APP robust I/O (rio) ---- */
typedef struct {
    int rio_fd;
    int rio_cnt;
    char *rio_bufptr;
    char rio_buf[MAXBUF];
} rio_t;

static void rio_readinitb(rio_t *rp, int fd) {
    rp->rio_fd = fd;
    rp->rio_cnt = 0;
    rp->rio_bufptr = rp->rio_buf;
}

static ssize_t rio_read(rio_t *rp, char *usrbuf, size_t n) {
    while (rp->rio_cnt <= 0) {
        rp->rio_cnt = read(rp->rio_fd, rp->rio_buf, sizeof(rp->rio_buf));
        if (rp->rio_cnt < 0) {
            if (errno != EINTR) return -1;
        } else if (rp->rio_cnt == 0) {
            return 0;
        } else {
            rp->rio_bufptr = rp->rio_buf;
        }
    }
    int cnt = n < (size_t)rp->rio_cnt ? (int)n : rp->rio_cnt;
    memcpy(usrbuf, rp->rio_bufptr, cnt);
    rp->rio_bufptr += cnt;
    rp->rio_cnt -= cnt;
    return cnt;
}

static ssize_t rio_readlineb(rio_t *rp, void *usrbuf, size_t maxlen) {
    size_t n;
    ssize_t rc;
    char c, *bufp = usrbuf;
    for (n = 1; n < maxlen; n++) {
        if ((rc = rio_read(rp, &c, 1)) == 1) {
            *bufp++ = c;
            if (c == '\n') { n++; break; }
        } else if (rc == 0) {
            if (n == 1) return 0;
            break;
        } else {
            return -1;
        }
    }
    *bufp = 0;
    return n - 1;
}

static ssize_t rio_readnb(rio_t *rp, void *usrbuf, size_t n) {
    size_t nleft = n;
    char *bufp = usrbuf;
    while (nleft > 0) {
        ssize_t nread = rio_read(rp, bufp, nleft);
        if (nread < 0) return -1;
        if (nread == 0) break;
        nleft -= nread;
        bufp += nread;
    }
    return n - nleft;
}

static ssize_t rio_writen(int fd, const void *usrbuf, size_t n) {
    size_t nleft = n;
    const char *bufp = usrbuf;
    while (nleft > 0) {
        ssize_t nwritten = write(fd, bufp, nleft);
        if (nwritten <= 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        nleft -= nwritten;
        bufp += nwritten;
    }
    return n;
}

/* ---- the proxy ---- */

static void clienterror(int fd, const char *status, const char *msg) {
    char body[MAXLINE], head[MAXLINE];
    snprintf(body, sizeof body, "<html><body>proxy: %s: %s</body></html>\r\n", status, msg);
    snprintf(head, sizeof head,
             "HTTP/1.0 %s\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n\r\n",
             status, strlen(body));
    rio_writen(fd, head, strlen(head));
    rio_writen(fd, body, strlen(body));
}

/* http://host[:port]/path -> host, port, path; 0 on success. */
static int parse_uri(const char *uri, char *host, char *port, char *path) {
    if (strncasecmp(uri, "http://", 7) != 0) return -1;
    const char *h = uri + 7;
    const char *slash = strchr(h, '/');
    size_t hostlen = slash ? (size_t)(slash - h) : strlen(h);
    if (hostlen == 0 || hostlen >= MAXLINE) return -1;
    char hostport[MAXLINE];
    memcpy(hostport, h, hostlen);
    hostport[hostlen] = 0;
    strcpy(path, slash ? slash : "/");
    char *colon = strchr(hostport, ':');
    if (colon) {
        *colon = 0;
        strcpy(port, colon + 1);
    } else {
        strcpy(port, "80");
    }
    strcpy(host, hostport);
    return 0;
}

/* Offline resolution: localhost and IPv4 literals only. */
static int open_clientfd(const char *host, const char *port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    const char *ip = strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether header line `line` is named in the Connection header value `named`. */
static int named_by_connection(const char *line, const char *named) {
    const char *colon = strchr(line, ':');
    if (!colon || !*named) return 0;
    size_t len = colon - line;
    const char *p = named;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\r' && *p != '\n') p++;
        if ((size_t)(p - start) == len && strncasecmp(start, line, len) == 0) return 1;
        while (*p && *p != ',') p++;
    }
    return 0;
}

static void doit(int fd) {
    char buf[MAXLINE], method[MAXLINE], uri[MAXLINE], version[MAXLINE];
    char host[MAXLINE], port[MAXLINE], path[MAXLINE];
    char headers[MAXHEADERS][MAXLINE]; /* 800 KiB of an 8 MiB thread stack */
    char named[MAXLINE] = "";
    int nheaders = 0;
    rio_t rio;

    rio_readinitb(&rio, fd);
    buf[0] = 0;
    rio_readlineb(&rio, buf, MAXLINE); /* an empty connection leaves buf empty: 400 below */
    if (sscanf(buf, "%s %s %s", method, uri, version) != 3 || strncmp(version, "HTTP/1.", 7) != 0) {
        clienterror(fd, "400 Bad Request", "cannot parse the request line");
        return;
    }
    /* The request headers, up to the empty line. */
    while (rio_readlineb(&rio, buf, MAXLINE) > 0 && strcmp(buf, "\r\n") != 0) {
        if (strncasecmp(buf, "Connection:", 11) == 0) strcpy(named, buf + 11);
        if (nheaders < MAXHEADERS) strcpy(headers[nheaders++], buf);
    }
    if (strcasecmp(method, "GET") != 0) {
        clienterror(fd, "501 Not Implemented", "this proxy only implements GET");
        return;
    }
    if (parse_uri(uri, host, port, path) < 0) {
        clienterror(fd, "400 Bad Request", "not an absolute http:// URI");
        return;
    }

    char request[MAXBUF * 4];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.0\r\nHost: %s:%s\r\n%sConnection: close\r\nProxy-Connection: close\r\n",
                     path, host, port, user_agent_hdr);
    for (int i = 0; i < nheaders; i++) {
        const char *h = headers[i];
        if (strncasecmp(h, "Host:", 5) == 0 || strncasecmp(h, "User-Agent:", 11) == 0 ||
            strncasecmp(h, "Connection:", 11) == 0 || strncasecmp(h, "Proxy-Connection:", 17) == 0 ||
            strncasecmp(h, "Keep-Alive:", 11) == 0 || named_by_connection(h, named))
            continue;
        if (n + strlen(h) + 3 < sizeof request) n += snprintf(request + n, sizeof request - n, "%s", h);
    }
    n += snprintf(request + n, sizeof request - n, "\r\n");

    int server = open_clientfd(host, port);
    if (server < 0) {
        clienterror(fd, "502 Bad Gateway", "cannot connect to the origin");
        return;
    }
    rio_writen(server, request, n);
    rio_t srio;
    rio_readinitb(&srio, server);
    char data[MAXBUF];
    ssize_t got;
    while ((got = rio_readnb(&srio, data, sizeof data)) > 0) {
        rio_writen(fd, data, got); /* SIGPIPE ends everything if the client has gone */
    }
    close(server);
}

static void *thread(void *vargp) {
    int fd = *(int *)vargp;
    free(vargp);
    pthread_detach(pthread_self());
    doit(fd);
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <port>\n", argv[0]);
        exit(1);
    }
    int listenfd = socket(AF_INET, SOCK_STREAM, 0);
    int optval = 1;
    setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &optval, sizeof optval);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(listenfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listenfd, 1024) < 0) {
        perror("listen");
        exit(1);
    }
    while (1) {
        int *connfd = malloc(sizeof(int));
        *connfd = accept(listenfd, NULL, NULL);
        if (*connfd < 0) {
            free(connfd);
            continue;
        }
        pthread_t tid;
        pthread_create(&tid, NULL, thread, connfd);
    }
}
