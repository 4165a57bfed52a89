/* worker.c -- the fitness of external worker processes (see evb_worker.h, docs/worker-protocol.md).
 *
 * One worker per workspace, in a process group of its own (setpgid in the child and in the parent, so that
 * neither order of the two loses it), so that stopping it ends the shell, the worker and whatever they forked
 * (killpg). The group is killed while the worker is still unreaped (a zombie at worst), so its id cannot
 * have been reused by then; the worker is reaped after. Messages are msgpack maps, written whole; what a
 * worker sends is read into a buffer of bounded size and checked header by header (evb_msgpack_scan) before
 * msgpack-c decodes it, so that no size a worker declares (a string of 1 GB, an array of 2^32 elements)
 * makes evobudget read or allocate beyond the limits of evb_worker.h. Every read waits with poll() for at
 * most the timeout. A worker's pipes are close-on-exec, so that no worker inherits another's and an exit is
 * seen as end-of-file at once. The caller ignores SIGPIPE (the CLI does), so a write to a dead worker fails
 * with EPIPE instead of ending the process. */
#define _GNU_SOURCE
#include "evobudget/evb_worker.h"
#include "evobudget/evb_status.h"
#include "evobudget/evb_task.h"
#include "core/msgpack_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct worker {
    const evb_worker_params *p;
    pid_t pid;                    /* also the id of its process group */
    int to_fd, from_fd;
    unsigned char *in;            /* [in_cap] bytes read from the worker; the message being read starts at 0 */
    size_t in_cap, in_used;       /* in_cap <= the limit of the message read + one read */
    size_t in_msg;                /* bytes of the last message handed out, dropped at the next receive */
    char limit_why[160];          /* which limit the last refused message broke */
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
    /* a gentle stop waits a moment for the worker to leave on its own (WNOWAIT: it stays unreaped) */
    for (int i = 0; gently && i < 50; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == w->pid) break;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    /* the whole group: a shell's children and whatever the worker forked, then the worker itself */
    kill(-w->pid, SIGKILL);
    kill(w->pid, SIGKILL);
    int st;
    while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR) {}
    w->pid = -1;
    w->in_used = w->in_msg = 0;
}

/* Writes the message in w->sb: 0 sent, 1 the worker is gone, 2 it did not read its stdin within the timeout
 * (our end of the pipe is non-blocking, so a worker that stops reading cannot hang evobudget). */
static int send_all(worker *w) {
    size_t off = 0;
    double until = now() + w->p->timeout_s;
    while (off < w->sb.size) {
        ssize_t n = write(w->to_fd, w->sb.data + off, w->sb.size - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double left = until - now();
            struct pollfd pf = {w->to_fd, POLLOUT, 0};
            if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) == 0) return 2;
            continue;
        }
        if (n <= 0) return 1;
        off += (size_t)n;
    }
    return 0;
}


/* Waits for one msgpack object: 0 got it (in *out, valid until the next call), 1 end of file (the worker
 * exited), 2 timeout, 3 bytes that are not msgpack, 4 a message beyond the limits (w->limit_why says which;
 * the bytes are not read further). */
static int receive(worker *w, msgpack_unpacked *out, double timeout_s, size_t max_bytes) {
    double until = now() + timeout_s;
    if (w->in_msg) { /* the previous message is done with */
        memmove(w->in, w->in + w->in_msg, w->in_used - w->in_msg);
        w->in_used -= w->in_msg;
        w->in_msg = 0;
    }
    for (;;) {
        evb_msgpack_scan_info mp;
        int scan = evb_msgpack_scan(w->in, w->in_used, max_bytes, EVB_WORKER_MAX_ELEMENTS, EVB_WORKER_MAX_DEPTH, &mp);
        char *why = w->limit_why;
        size_t n_why = sizeof w->limit_why;
        switch (scan) {
        case EVB_MSGPACK_NOT_MSGPACK:
            snprintf(why, n_why, "sent bytes that are not msgpack (0x%02x at byte %zu)", mp.byte, mp.pos);
            return 3;
        case EVB_MSGPACK_TOO_LONG:
            snprintf(why, n_why, "sent a message of more than %zu bytes (the limit)", max_bytes);
            return 4;
        case EVB_MSGPACK_TOO_MANY:
            snprintf(why, n_why, "sent %s of %llu %s (the limit is %d)", mp.pairs ? "a map" : "an array",
                     (unsigned long long)mp.count, mp.pairs ? "pairs" : "elements", EVB_WORKER_MAX_ELEMENTS);
            return 4;
        case EVB_MSGPACK_TOO_DEEP:
            snprintf(why, n_why, "sent arrays or maps nested deeper than %d levels (the limit)", EVB_WORKER_MAX_DEPTH);
            return 4;
        }
        if (scan == EVB_MSGPACK_WHOLE) {
            size_t off = 0, k = mp.len;
            if (msgpack_unpack_next(out, (const char *)w->in, k, &off) != MSGPACK_UNPACK_SUCCESS) {
                snprintf(w->limit_why, sizeof w->limit_why, "sent bytes that are not msgpack");
                return 3;
            }
            w->in_msg = k;
            return 0;
        }
        if (w->in_used >= max_bytes) { /* many small objects in one message */
            snprintf(w->limit_why, sizeof w->limit_why, "sent a message of more than %zu bytes (the limit)", max_bytes);
            return 4;
        }
        double left = until - now();
        if (left <= 0) return 2;
        struct pollfd pf = {w->from_fd, POLLIN, 0};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) return 2;
        if (w->in_used == w->in_cap) { /* grow by doubling, to the limit and one read beyond */
            size_t cap = w->in_cap ? w->in_cap * 2 : 65536;
            if (cap > max_bytes + 65536) cap = max_bytes + 65536;
            unsigned char *in = realloc(w->in, cap);
            if (!in) { snprintf(w->limit_why, sizeof w->limit_why, "sent a message that does not fit in memory"); return 4; }
            w->in = in;
            w->in_cap = cap;
        }
        ssize_t n = read(w->from_fd, w->in + w->in_used, w->in_cap - w->in_used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1;
        w->in_used += (size_t)n;
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

static const char *what(const worker *w, int r) {
    if (r == 5) return "did not read its request in time";
    return r == 1 ? "exited" : r == 2 ? "did not answer in time" : w->limit_why; /* 3 and 4: what receive found */
}

// ---- protocol 2: what a worker registers ----

static int as_int(const msgpack_object *o, int64_t *v) {
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) { *v = (int64_t)o->via.u64; return 1; }
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *v = o->via.i64; return 1; }
    return 0;
}

static char *str_dup(const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return NULL;
    char *s = malloc((size_t)o->via.str.size + 1);
    if (s) { memcpy(s, o->via.str.ptr, o->via.str.size); s[o->via.str.size] = 0; }
    return s;
}

/* A registered sequence given as tokens, checked against the model and appended to out: a status, with the
 * reason (naming the sequence) as the last error. */
static int add_tokens(const evb_worker_model *md, const msgpack_object *tok, const msgpack_object *from, int i, int g, evb_seqs *out) {
    uint32_t n = tok->type == MSGPACK_OBJECT_ARRAY ? tok->via.array.size : 0;
    int64_t k = 0, v = 0;
    if (!n || !as_int(from, &k)) EVB_ERRORF(EVB_EINVAL, "sequence %d has no tokens array or no score_from", i);
    if (n > (uint32_t)md->max_len) EVB_ERRORF(EVB_EINVAL, "sequence %d has %u tokens, beyond the model's context of %d", i, n, md->max_len);
    if (k < 1 || k >= n) EVB_ERRORF(EVB_EINVAL, "sequence %d: score_from %lld is outside [1, %u)", i, (long long)k, n);
    int32_t *t = malloc(sizeof(int32_t) * n);
    if (!t) EVB_ERROR("worker registration: out of memory", EVB_ENOMEM);
    for (uint32_t j = 0; j < n; j++) {
        if (!as_int(&tok->via.array.ptr[j], &v) || v < 0 || v >= md->vocab_size) {
            free(t);
            if (!as_int(&tok->via.array.ptr[j], &v)) EVB_ERRORF(EVB_EINVAL, "sequence %d: token %u is not an integer", i, j);
            EVB_ERRORF(EVB_EINVAL, "sequence %d: token %u is %lld, outside the model's vocabulary [0, %d)", i, j, (long long)v, md->vocab_size);
        }
        t[j] = (int32_t)v;
    }
    int st = evb_seqs_add(out, t, (int)n, (int)k, g);
    free(t);
    return st;
}

/* A registered sequence given as text (evb_seqs_add_text: lm-evaluation-harness's split), appended to out. */
static int add_text(const evb_worker_model *md, const msgpack_object *o, int i, int g, evb_seqs *out) {
    char *c = str_dup(field(o, "context")), *x = str_dup(field(o, "continuation"));
    int st = c && x && md->tok ? evb_seqs_add_text(out, md->tok, c, x, g)
                               : EVB_RAISEF(EVB_EINVAL, "sequence %d has neither tokens nor context and continuation strings", i);
    free(c); free(x);
    if (!st && evb_seqs_len(out, out->n - 1) > md->max_len)
        st = EVB_RAISEF(EVB_EINVAL, "sequence %d: its text makes %d tokens, beyond the model's context of %d", i, evb_seqs_len(out, out->n - 1), md->max_len);
    return st;
}

/* Sequence i of a ready message: {"tokens": [...], "score_from": k, "group": g} or {"context": text,
 * "continuation": text, "group": g}, checked against the model. 0, or -1 with the reason in why. The set
 * is filled in order, so the index evb_seqs_add's messages name is i. */
static int add_registered(const evb_worker_model *md, const msgpack_object *o, int i, evb_seqs *out, char *why, size_t n_why) {
    int64_t g = i;
    const msgpack_object *tok = field(o, "tokens"), *gr = field(o, "group");
    int st = EVB_SUCCESS;
    if (o->type != MSGPACK_OBJECT_MAP) st = EVB_RAISEF(EVB_EINVAL, "sequence %d is not a map", i);
    else if (gr && (!as_int(gr, &g) || g < 0 || g > INT32_MAX)) st = EVB_RAISEF(EVB_EINVAL, "sequence %d: its group is not a count", i);
    else st = tok ? add_tokens(md, tok, field(o, "score_from"), i, (int)g, out) : add_text(md, o, i, (int)g, out);
    if (!st) return 0;
    const char *e = evb_last_error();
    if (strncmp(e, "sequence ", 9)) snprintf(why, n_why, "registered sequence %d: %s", i, e);
    else snprintf(why, n_why, "registered %s", e);
    return -1;
}

/* What a ready message registers, into got (and *topk): 0, or -1 with the reason in why. */
static int read_registration(const evb_worker_model *md, const msgpack_object *m, evb_seqs *got, int *topk, char *why, size_t n_why) {
    const msgpack_object *sq = field(m, "sequences");
    int64_t k = 0;
    if (!sq || sq->type != MSGPACK_OBJECT_ARRAY || sq->via.array.size == 0) {
        snprintf(why, n_why, "registered no sequences (a worker of a model's search answers the hello with protocol 2 and \"sequences\")");
        return -1;
    }
    const msgpack_object *kv = field(m, "topk");
    if (kv && (!as_int(kv, &k) || k < 0 || k > 64)) { snprintf(why, n_why, "asked for top-k outside [0, 64]"); return -1; }
    *topk = (int)k;
    for (uint32_t i = 0; i < sq->via.array.size; i++)
        if (add_registered(md, &sq->via.array.ptr[i], (int)i, got, why, n_why)) return -1;
    return 0;
}

static int same_seqs(const evb_seqs *a, const evb_seqs *b) {
    return a->n == b->n && a->n_tokens == b->n_tokens && !memcmp(a->tokens, b->tokens, sizeof(int32_t) * a->n_tokens) &&
           !memcmp(a->start, b->start, sizeof(size_t) * (a->n + 1)) && !memcmp(a->score_from, b->score_from, sizeof(int) * a->n) &&
           !memcmp(a->group, b->group, sizeof(int) * a->n);
}

/* The ready message: its protocol, and with a model what it registers (into got, or compared with what the
 * first worker registered). 0, or -1 with the reason in why. */
static int check_ready(const worker *w, const msgpack_object *m, evb_seqs *got, int *topk, char *why, size_t n_why) {
    const msgpack_object *pv = field(m, "protocol");
    int want = w->p->model ? 2 : 1;
    int64_t v = -1;
    if (!as_int(pv, &v) || v < want || v > EVB_WORKER_PROTOCOL) {
        snprintf(why, n_why, "speaks protocol %lld, evobudget %d%s", (long long)v, EVB_WORKER_PROTOCOL,
                 w->p->model ? " (a model's search needs protocol 2: the worker registers its sequences)" : "");
        return -1;
    }
    if (!w->p->model) return 0;
    evb_seqs mine = {0};
    int k = 0, rc = read_registration(w->p->model, m, got ? got : &mine, got ? topk : &k, why, n_why);
    if (!rc && !got && (!w->p->registered || !same_seqs(&mine, w->p->registered) || k != w->p->topk)) {
        snprintf(why, n_why, "registered other sequences or another top K than the first worker did (every worker must register the same)");
        rc = -1;
    }
    evb_seqs_free(&mine);
    return rc;
}

static void pack_hello(worker *w) {
    const evb_worker_params *p = w->p;
    msgpack_sbuffer_clear(&w->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, p->model ? 7 : 6);
    pack_key(&pk, "type"); pack_key(&pk, "hello");
    pack_key(&pk, "protocol"); msgpack_pack_int(&pk, p->model ? 2 : 1);
    pack_key(&pk, "problem"); pack_key(&pk, p->problem_path ? p->problem_path : "");
    pack_key(&pk, "n_units"); msgpack_pack_int(&pk, p->n_units);
    pack_key(&pk, "n_levels"); msgpack_pack_array(&pk, (size_t)p->n_units);
    for (int u = 0; u < p->n_units; u++) msgpack_pack_int(&pk, p->n_levels[u]);
    pack_key(&pk, "budget"); msgpack_pack_double(&pk, p->budget);
    if (!p->model) return;
    pack_key(&pk, "model");
    msgpack_pack_map(&pk, 4);
    pack_key(&pk, "vocab_size"); msgpack_pack_int(&pk, p->model->vocab_size);
    pack_key(&pk, "max_len"); msgpack_pack_int(&pk, p->model->max_len);
    pack_key(&pk, "bos"); msgpack_pack_int(&pk, p->model->bos);
    pack_key(&pk, "eos"); msgpack_pack_int(&pk, p->model->eos);
}

/* Starts the worker and exchanges the hello; a short description of a failure goes to why. With a model, the
 * registration is read into got (evb_worker_register) or checked against the first worker's (got NULL). */
static int start_as(worker *w, evb_seqs *got, int *topk, char *why, size_t n_why) {
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC)) { snprintf(why, n_why, "could not be started (pipe: %s)", strerror(errno)); return -1; }
    if (pipe2(from, O_CLOEXEC)) { close(to[0]); close(to[1]); snprintf(why, n_why, "could not be started (pipe: %s)", strerror(errno)); return -1; }
    pid_t pid = fork();
    if (pid < 0) { close(to[0]); close(to[1]); close(from[0]); close(from[1]); snprintf(why, n_why, "could not be started (fork: %s)", strerror(errno)); return -1; }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(to[0], 0);
        dup2(from[1], 1);
        execl("/bin/sh", "sh", "-c", w->p->command, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: the group exists before any kill below, whichever runs first */
    close(to[0]); close(from[1]);
    fcntl(to[1], F_SETFL, fcntl(to[1], F_GETFL) | O_NONBLOCK); /* send_all waits with poll() */
    w->pid = pid; w->to_fd = to[1]; w->from_fd = from[0];
    w->in_used = w->in_msg = 0;
    snprintf(w->name, sizeof w->name, "%d", (int)pid);
    pack_hello(w);
    int sent = send_all(w);
    if (sent) { snprintf(why, n_why, sent == 2 ? "did not read the hello in time" : "exited before the hello"); return -1; }
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    int r = receive(w, &m, w->p->timeout_s, w->p->model ? EVB_WORKER_MAX_READY : EVB_WORKER_MAX_MESSAGE);
    int ok = r == 0 && is_str(field(&m.data, "type"), "ready");
    if (ok && check_ready(w, &m.data, got, topk, why, n_why)) { ok = 0; r = -1; }
    msgpack_unpacked_destroy(&m);
    if (w->in_cap > EVB_WORKER_MAX_MESSAGE + 65536 && w->in_used == w->in_msg) { /* a large ready's buffer: not kept for results */
        free(w->in);
        w->in = NULL;
        w->in_cap = w->in_used = w->in_msg = 0;
    }
    if (!ok) {
        if (r >= 0) snprintf(why, n_why, "%s instead of answering the hello with {\"type\": \"ready\"}", r == 0 ? "answered" : what(w, r));
        return -1;
    }
    return 0;
}

static int start(worker *w, char *why, size_t n_why) { return start_as(w, NULL, NULL, why, n_why); }

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
        free(w->in);
        w->in = NULL;
        EVB_ERRORF(EVB_EBADFUNC, "worker '%s' %s (hint: run the command by hand; docs/worker-protocol.md)", w->p->command, why);
    }
    return EVB_SUCCESS;
}

static void ws_destroy(void *wp) {
    worker *w = wp;
    stop(w, 1);
    msgpack_sbuffer_destroy(&w->sb);
    free(w->in);
    w->in = NULL;
}

/* A request's fields after id, levels, tokens and seed: the scores of protocol 2 (NULL: none). */
static void pack_scores(msgpack_packer *pk, const evb_seq_scores *sc) {
    pack_key(pk, "sequences"); msgpack_pack_array(pk, (size_t)sc->n);
    for (int k = 0; k < sc->n; k++) msgpack_pack_int(pk, sc->seq[k]);
    pack_key(pk, "logprobs"); msgpack_pack_array(pk, (size_t)sc->n);
    for (int k = 0; k < sc->n; k++) {
        msgpack_pack_array(pk, sc->off[k + 1] - sc->off[k]);
        for (size_t j = sc->off[k]; j < sc->off[k + 1]; j++) msgpack_pack_float(pk, sc->lp[j]);
    }
    if (!sc->topk) return;
    const size_t K = (size_t)sc->topk;
    pack_key(pk, "topk_ids"); msgpack_pack_array(pk, (size_t)sc->n);
    for (int k = 0; k < sc->n; k++) {
        msgpack_pack_array(pk, (sc->off[k + 1] - sc->off[k]) * K);
        for (size_t j = sc->off[k] * K; j < sc->off[k + 1] * K; j++) msgpack_pack_int(pk, sc->top_id[j]);
    }
    pack_key(pk, "topk_logprobs"); msgpack_pack_array(pk, (size_t)sc->n);
    for (int k = 0; k < sc->n; k++) {
        msgpack_pack_array(pk, (sc->off[k + 1] - sc->off[k]) * K);
        for (size_t j = sc->off[k] * K; j < sc->off[k + 1] * K; j++) msgpack_pack_float(pk, sc->top_lp[j]);
    }
}

/* One candidate's request and its result, with restarts and retries (see evb_worker.h). */
static int exchange(worker *w, const evb_genome *g, const evb_batch *b, const evb_seq_scores *sc, double *fitness) {
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
        msgpack_pack_map(&pk, sc ? (sc->topk ? 9 : 7) : 5);
        pack_key(&pk, "type"); pack_key(&pk, "evaluate");
        pack_key(&pk, "id"); msgpack_pack_uint64(&pk, id);
        pack_key(&pk, "levels"); msgpack_pack_array(&pk, (size_t)g->n_units);
        for (int u = 0; u < g->n_units; u++) msgpack_pack_int(&pk, g->level[u]);
        pack_key(&pk, "tokens"); msgpack_pack_uint64(&pk, b->n_tokens);
        pack_key(&pk, "seed"); msgpack_pack_uint64(&pk, b->seed);
        if (sc) pack_scores(&pk, sc);
        int r = send_all(w);
        if (r == 2) r = 5;
        msgpack_unpacked m;
        msgpack_unpacked_init(&m);
        if (!r) r = receive(w, &m, w->p->timeout_s, EVB_WORKER_MAX_MESSAGE);
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
        } else snprintf(why, sizeof why, "%s", what(w, r));
        msgpack_unpacked_destroy(&m);
        say(w, "worker %s (%s) %s; restarting it and retrying the candidate (attempt %d of %d)", w->name, w->p->command, why,
            attempt + 1, w->p->retries + 1);
        stop(w, 0);
    }
    EVB_ERRORF(EVB_EBADFUNC, "worker '%s' %s, %d times for one candidate; the run stops (its checkpoint holds the last whole generation)",
               w->p->command, why, w->p->retries + 1);
}

static int evaluate(const void *params, void *wp, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *fitness) {
    (void)params; (void)ref;
    return exchange(wp, g, b, NULL, fitness);
}

const evb_fitness_type evb_fitness_worker = {"worker", ws_size, ws_init, ws_destroy, evaluate};

// ---- protocol 2 ----

int evb_worker_register(const evb_worker_params *p, evb_seqs *seqs, int *topk) {
    if (!p->model) EVB_ERROR("worker registration: no model", EVB_EINVAL);
    worker w;
    memset(&w, 0, sizeof w);
    w.p = p;
    w.pid = -1; w.to_fd = w.from_fd = -1;
    msgpack_sbuffer_init(&w.sb);
    char why[512];
    *topk = 0;
    int bad = start_as(&w, seqs, topk, why, sizeof why);
    stop(&w, !bad);
    msgpack_sbuffer_destroy(&w.sb);
    free(w.in);
    if (bad) {
        evb_seqs_free(seqs);
        EVB_ERRORF(EVB_EINVAL, "worker '%s' %s (hint: docs/worker-protocol.md, protocol 2)", p->command, why);
    }
    return EVB_SUCCESS;
}

static int judge(const void *ctx, void *wp, const evb_genome *g, const evb_batch *b, const evb_seq_scores *s, double *fitness) {
    (void)ctx;
    return exchange(wp, g, b, s, fitness);
}

const evb_seq_judge evb_judge_worker = {"worker", ws_size, ws_init, ws_destroy, judge};
