/* worker.c -- the fitness of external worker processes (see evb_worker.h, docs/worker-protocol.md).
 *
 * One worker per workspace. Messages are msgpack maps, written whole and read through a streaming
 * unpacker, so a worker may split or join its writes as it likes. Every read waits with poll() for at most
 * the timeout. A worker's pipes are close-on-exec, so that no worker inherits another's and an exit is seen
 * as end-of-file at once. The caller ignores SIGPIPE (the CLI does), so a write to a dead worker fails with
 * EPIPE instead of ending the process. */
#define _GNU_SOURCE
#include "evobudget/evb_worker.h"
#include "evobudget/evb_status.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct worker {
    const evb_worker_params *p;
    pid_t pid;
    int to_fd, from_fd;
    msgpack_unpacker up;
    int up_ready;
    uint64_t next_id;
    char name[96];
    msgpack_sbuffer sb;
} worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void say(const worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const worker *w, const char *fmt, ...) {
    if (!w->p->log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->p->log(w->p->log_ctx, line);
}

static void stop(worker *w, int gently) {
    if (w->pid <= 0) return;
    if (gently && w->to_fd >= 0) {
        msgpack_sbuffer_clear(&w->sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 4); msgpack_pack_str_body(&pk, "type", 4);
        msgpack_pack_str(&pk, 3); msgpack_pack_str_body(&pk, "bye", 3);
        if (write(w->to_fd, w->sb.data, w->sb.size) < 0) { /* it is gone already */ }
    }
    if (w->to_fd >= 0) close(w->to_fd);
    if (w->from_fd >= 0) close(w->from_fd);
    w->to_fd = w->from_fd = -1;
    int st;
    /* a gentle stop waits a moment for the worker to leave on its own */
    for (int i = 0; gently && i < 50; i++) {
        if (waitpid(w->pid, &st, WNOHANG) == w->pid) { w->pid = -1; break; }
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    if (w->pid > 0) { kill(w->pid, SIGKILL); waitpid(w->pid, &st, 0); }
    w->pid = -1;
    if (w->up_ready) { msgpack_unpacker_destroy(&w->up); w->up_ready = 0; }
}

static int send_all(worker *w) {
    size_t off = 0;
    while (off < w->sb.size) {
        ssize_t n = write(w->to_fd, w->sb.data + off, w->sb.size - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Waits for one msgpack object: 0 got it (in *out, valid until the next call), 1 end of file (the worker
 * exited), 2 timeout, 3 bytes that are not msgpack. */
static int receive(worker *w, msgpack_unpacked *out, double timeout_s) {
    double until = now() + timeout_s;
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&w->up, out);
        if (r == MSGPACK_UNPACK_SUCCESS) return 0;
        if (r == MSGPACK_UNPACK_PARSE_ERROR || r == MSGPACK_UNPACK_NOMEM_ERROR) return 3;
        double left = until - now();
        if (left <= 0) return 2;
        struct pollfd pf = {w->from_fd, POLLIN, 0};
        int k = poll(&pf, 1, (int)(left * 1000) + 1);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) return 2;
        if (!msgpack_unpacker_reserve_buffer(&w->up, 65536)) return 3;
        ssize_t n = read(w->from_fd, msgpack_unpacker_buffer(&w->up), msgpack_unpacker_buffer_capacity(&w->up));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1;
        msgpack_unpacker_buffer_consumed(&w->up, (size_t)n);
    }
}

static const msgpack_object *field(const msgpack_object *m, const char *k) {
    if (m->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(k);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n && !memcmp(kv->key.via.str.ptr, k, n)) return &kv->val;
    }
    return NULL;
}

static int is_str(const msgpack_object *o, const char *s) {
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && !memcmp(o->via.str.ptr, s, strlen(s));
}

static void pack_key(msgpack_packer *pk, const char *k) { msgpack_pack_str(pk, strlen(k)); msgpack_pack_str_body(pk, k, strlen(k)); }

static const char *what(int r) { return r == 1 ? "exited" : r == 2 ? "did not answer in time" : "sent bytes that are not msgpack"; }

/* Starts the worker and exchanges the hello; a short description of a failure goes to why. */
static int start(worker *w, char *why, size_t n_why) {
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC)) { snprintf(why, n_why, "could not be started (pipe: %s)", strerror(errno)); return -1; }
    if (pipe2(from, O_CLOEXEC)) { close(to[0]); close(to[1]); snprintf(why, n_why, "could not be started (pipe: %s)", strerror(errno)); return -1; }
    pid_t pid = fork();
    if (pid < 0) { close(to[0]); close(to[1]); close(from[0]); close(from[1]); snprintf(why, n_why, "could not be started (fork: %s)", strerror(errno)); return -1; }
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        execl("/bin/sh", "sh", "-c", w->p->command, (char *)NULL);
        _exit(127);
    }
    close(to[0]); close(from[1]);
    w->pid = pid; w->to_fd = to[1]; w->from_fd = from[0];
    snprintf(w->name, sizeof w->name, "%d", (int)pid);
    msgpack_unpacker_init(&w->up, 65536);
    w->up_ready = 1;
    msgpack_sbuffer_clear(&w->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_key(&pk, "type"); pack_key(&pk, "hello");
    pack_key(&pk, "protocol"); msgpack_pack_int(&pk, EVB_WORKER_PROTOCOL);
    pack_key(&pk, "problem"); pack_key(&pk, w->p->problem_path ? w->p->problem_path : "");
    pack_key(&pk, "n_units"); msgpack_pack_int(&pk, w->p->n_units);
    pack_key(&pk, "n_levels"); msgpack_pack_array(&pk, (size_t)w->p->n_units);
    for (int u = 0; u < w->p->n_units; u++) msgpack_pack_int(&pk, w->p->n_levels[u]);
    pack_key(&pk, "budget"); msgpack_pack_double(&pk, w->p->budget);
    if (send_all(w)) { snprintf(why, n_why, "exited before the hello"); return -1; }
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    int r = receive(w, &m, w->p->timeout_s);
    int ok = r == 0 && is_str(field(&m.data, "type"), "ready");
    const msgpack_object *pv = ok ? field(&m.data, "protocol") : NULL;
    if (ok && (!pv || pv->type != MSGPACK_OBJECT_POSITIVE_INTEGER || pv->via.u64 != EVB_WORKER_PROTOCOL)) {
        snprintf(why, n_why, "speaks protocol %lld, evobudget %d", pv && pv->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)pv->via.u64 : -1LL, EVB_WORKER_PROTOCOL);
        ok = 0;
        r = -1;
    }
    msgpack_unpacked_destroy(&m);
    if (!ok) {
        if (r >= 0) snprintf(why, n_why, "%s instead of answering the hello with {\"type\": \"ready\"}", r == 0 ? "answered" : what(r));
        return -1;
    }
    return 0;
}

static size_t ws_size(const void *params) { (void)params; return sizeof(worker); }

static int ws_init(void *wp, const void *params) {
    worker *w = wp;
    memset(w, 0, sizeof *w);
    w->p = params;
    w->pid = -1; w->to_fd = w->from_fd = -1;
    msgpack_sbuffer_init(&w->sb);
    char why[256];
    if (start(w, why, sizeof why)) {
        stop(w, 0);
        msgpack_sbuffer_destroy(&w->sb);
        EVB_ERRORF(EVB_EBADFUNC, "worker '%s' %s (hint: run the command by hand; docs/worker-protocol.md)", w->p->command, why);
    }
    return EVB_SUCCESS;
}

static void ws_destroy(void *wp) {
    worker *w = wp;
    stop(w, 1);
    msgpack_sbuffer_destroy(&w->sb);
}

static int evaluate(const void *params, void *wp, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *fitness) {
    (void)params; (void)ref;
    worker *w = wp;
    char why[256] = "";
    for (int attempt = 0; attempt <= w->p->retries; attempt++) {
        if (w->pid <= 0 && start(w, why, sizeof why)) {
            say(w, "worker %s (%s) %s; restarting (attempt %d of %d)", w->name, w->p->command, why, attempt + 1, w->p->retries + 1);
            stop(w, 0);
            continue;
        }
        uint64_t id = ++w->next_id;
        msgpack_sbuffer_clear(&w->sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 5);
        pack_key(&pk, "type"); pack_key(&pk, "evaluate");
        pack_key(&pk, "id"); msgpack_pack_uint64(&pk, id);
        pack_key(&pk, "levels"); msgpack_pack_array(&pk, (size_t)g->n_units);
        for (int u = 0; u < g->n_units; u++) msgpack_pack_int(&pk, g->level[u]);
        pack_key(&pk, "tokens"); msgpack_pack_uint64(&pk, b->n_tokens);
        pack_key(&pk, "seed"); msgpack_pack_uint64(&pk, b->seed);
        int r = send_all(w) ? 1 : EVB_SUCCESS;
        msgpack_unpacked m;
        msgpack_unpacked_init(&m);
        if (!r) r = receive(w, &m, w->p->timeout_s);
        if (!r) {
            const msgpack_object *t = field(&m.data, "type"), *i = field(&m.data, "id"), *f = field(&m.data, "fitness");
            double v = NAN;
            if (f && (f->type == MSGPACK_OBJECT_FLOAT64 || f->type == MSGPACK_OBJECT_FLOAT32)) v = f->via.f64;
            else if (f && f->type == MSGPACK_OBJECT_POSITIVE_INTEGER) v = (double)f->via.u64;
            else if (f && f->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) v = (double)f->via.i64;
            if (!is_str(t, "result")) snprintf(why, sizeof why, "answered something that is not a result map");
            else if (!i || i->type != MSGPACK_OBJECT_POSITIVE_INTEGER || i->via.u64 != id)
                snprintf(why, sizeof why, "answered id %lld to request %llu", i && i->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)i->via.u64 : -1LL, (unsigned long long)id);
            else if (!isfinite(v)) snprintf(why, sizeof why, "returned fitness %g", v);
            else { *fitness = v; msgpack_unpacked_destroy(&m); return EVB_SUCCESS; }
        } else snprintf(why, sizeof why, "%s", what(r));
        msgpack_unpacked_destroy(&m);
        say(w, "worker %s (%s) %s; restarting it and retrying the candidate (attempt %d of %d)", w->name, w->p->command, why,
            attempt + 1, w->p->retries + 1);
        stop(w, 0);
    }
    EVB_ERRORF(EVB_EBADFUNC, "worker '%s' %s, %d times for one candidate; the run stops (its checkpoint holds the last whole generation)",
               w->p->command, why, w->p->retries + 1);
}

const evb_fitness_type evb_fitness_worker = {"worker", ws_size, ws_init, ws_destroy, evaluate};
