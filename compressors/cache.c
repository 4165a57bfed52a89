/* cache.c -- the bounded cache of expanded levels (see evb_db.h). A small table of slots, one per level
 * held, with a reference count and a last-use tick; one mutex guards it, and loads happen under it (a
 * level is expanded once even when several threads ask for it at the same time). */
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct slot { int entry; int refs; unsigned long tick; size_t bytes; void *w; } slot;

struct evb_level_cache {
    const evb_db *db;
    size_t max_bytes, bytes, peak, hits, misses;
    unsigned long tick;
    slot *slots;
    int n, cap;
    int bf16;           /* levels held as bfloat16 */
    pthread_mutex_t lock;
};

int evb_level_cache_alloc_as(const evb_db *db, size_t max_bytes, int bf16, evb_level_cache **out) {
    *out = NULL;
    evb_level_cache *c = calloc(1, sizeof *c);
    if (!c) EVB_ERROR("out of memory", EVB_ENOMEM);
    c->db = db;
    c->max_bytes = max_bytes;
    c->bf16 = bf16 != 0;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return EVB_SUCCESS;
}

int evb_level_cache_alloc(const evb_db *db, size_t max_bytes, evb_level_cache **out) {
    return evb_level_cache_alloc_as(db, max_bytes, 0, out);
}

/* Expands entry i into w as the cache holds levels (caller holds the lock). */
static int expand(const evb_level_cache *c, int i, void *w) {
    return c->bf16 ? evb_db_load16(c->db, i, w) : evb_db_load(c->db, i, w);
}

void evb_level_cache_free(evb_level_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->slots[i].w);
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Evicts unheld levels, least recently used first, until need more bytes fit (caller holds the lock). */
static void make_room(evb_level_cache *c, size_t need) {
    while (c->bytes + need > c->max_bytes) {
        int victim = -1;
        for (int i = 0; i < c->n; i++)
            if (c->slots[i].refs == 0 && (victim < 0 || c->slots[i].tick < c->slots[victim].tick)) victim = i;
        if (victim < 0) return;
        c->bytes -= c->slots[victim].bytes;
        free(c->slots[victim].w);
        c->slots[victim] = c->slots[--c->n];
    }
}

static int get(evb_level_cache *c, int i, const void **W) {
    *W = NULL;
    if (i < 0 || i >= evb_db_count(c->db)) EVB_ERRORF(EVB_EINVAL, "level %d is not in the database", i);
    pthread_mutex_lock(&c->lock);
    c->tick++;
    for (int k = 0; k < c->n; k++)
        if (c->slots[k].entry == i) {
            c->slots[k].refs++;
            c->slots[k].tick = c->tick;
            c->hits++;
            *W = c->slots[k].w;
            pthread_mutex_unlock(&c->lock);
            return EVB_SUCCESS;
        }
    evb_db_entry e = evb_db_get(c->db, i);
    size_t n = (size_t)e.rows * e.cols, bytes = (c->bf16 ? sizeof(uint16_t) : sizeof(float)) * n;
    make_room(c, bytes);
    int st = EVB_SUCCESS;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        slot *grown = realloc(c->slots, (size_t)cap * sizeof *grown);
        if (!grown) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        else { c->slots = grown; c->cap = cap; }
    }
    void *w = st ? NULL : malloc(bytes);
    if (!st && !w) st = EVB_RAISEF(EVB_ENOMEM, "out of memory expanding level %d (%zu bytes)", i, bytes);
    if (!st) st = expand(c, i, w);
    if (!st) {
        c->slots[c->n++] = (slot){i, 1, c->tick, bytes, w};
        c->bytes += bytes;
        if (c->bytes > c->peak) c->peak = c->bytes;
        c->misses++;
        *W = w;
    } else free(w);
    pthread_mutex_unlock(&c->lock);
    return st;
}

int evb_level_cache_get(evb_level_cache *c, int i, const float **W) {
    *W = NULL;
    if (c->bf16) EVB_ERROR("a float32 level asked of a cache that holds bfloat16 ones", EVB_EINVAL);
    const void *w;
    int st = get(c, i, &w);
    *W = w;
    return st;
}

int evb_level_cache_get16(evb_level_cache *c, int i, const uint16_t **W) {
    *W = NULL;
    if (!c->bf16) EVB_ERROR("a bfloat16 level asked of a cache that holds float32 ones", EVB_EINVAL);
    const void *w;
    int st = get(c, i, &w);
    *W = w;
    return st;
}

void evb_level_cache_release(evb_level_cache *c, int i) {
    pthread_mutex_lock(&c->lock);
    for (int k = 0; k < c->n; k++)
        if (c->slots[k].entry == i && c->slots[k].refs > 0) { c->slots[k].refs--; break; }
    pthread_mutex_unlock(&c->lock);
}

void evb_level_cache_stats(const evb_level_cache *c, size_t *hits, size_t *misses, size_t *bytes, size_t *peak_bytes) {
    pthread_mutex_lock((pthread_mutex_t *)&c->lock);
    *hits = c->hits; *misses = c->misses; *bytes = c->bytes; *peak_bytes = c->peak;
    pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
}
