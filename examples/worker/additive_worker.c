/* additive_worker.c -- a complete evobudget worker in C (docs/worker-protocol.md), with msgpack-c and
 * Jansson; no shell, no Python. Built by the project's CMake as build/examples/worker/additive_worker:
 *
 *     evobudget search --problem problem.json --fitness-cmd build/examples/worker/additive_worker --workers 2
 *
 * It reads msgpack requests from stdin and writes answers to stdout. The fitness is the sum over units of
 * their level's "fitness" value in the problem file, the built-in fitness of problem files. */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const msgpack_object *field(const msgpack_object *m, const char *k) {
    if (m->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) && !memcmp(kv->key.via.str.ptr, k, strlen(k)))
            return &kv->val;
    }
    return NULL;
}

static int is(const msgpack_object *o, const char *s) {
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && !memcmp(o->via.str.ptr, s, strlen(s));
}

static void put_key(msgpack_packer *pk, const char *k) { msgpack_pack_str(pk, strlen(k)); msgpack_pack_str_body(pk, k, strlen(k)); }

static void reply(msgpack_sbuffer *sb) {
    fwrite(sb->data, 1, sb->size, stdout);
    fflush(stdout);
    msgpack_sbuffer_clear(sb);
}

int main(void) {
    msgpack_unpacker up;
    msgpack_unpacker_init(&up, 65536);
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    json_t *units = NULL, *problem = NULL;
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&up, &m);
        if (r == MSGPACK_UNPACK_PARSE_ERROR) return 1;
        if (r != MSGPACK_UNPACK_SUCCESS) {
            msgpack_unpacker_reserve_buffer(&up, 65536);
            ssize_t n = read(0, msgpack_unpacker_buffer(&up), msgpack_unpacker_buffer_capacity(&up));
            if (n <= 0) break;
            msgpack_unpacker_buffer_consumed(&up, (size_t)n);
            continue;
        }
        const msgpack_object *t = field(&m.data, "type");
        if (is(t, "hello")) {
            const msgpack_object *path = field(&m.data, "problem");
            char name[4096] = "";
            if (path && path->type == MSGPACK_OBJECT_STR && path->via.str.size < sizeof name) memcpy(name, path->via.str.ptr, path->via.str.size);
            json_error_t e;
            problem = json_load_file(name, 0, &e);
            units = json_object_get(problem, "units");
            if (!units) { fprintf(stderr, "additive_worker: cannot read the problem %s\n", name); return 1; }
            msgpack_pack_map(&pk, 3);
            put_key(&pk, "type"); put_key(&pk, "ready");
            put_key(&pk, "protocol"); msgpack_pack_int(&pk, 1);
            put_key(&pk, "name"); put_key(&pk, "additive-c");
            reply(&sb);
        } else if (is(t, "evaluate")) {
            const msgpack_object *id = field(&m.data, "id"), *lv = field(&m.data, "levels");
            double f = 0;
            for (uint32_t u = 0; lv && lv->type == MSGPACK_OBJECT_ARRAY && u < lv->via.array.size; u++) {
                json_t *levels = json_object_get(json_array_get(units, u), "levels");
                f += json_number_value(json_object_get(json_array_get(levels, lv->via.array.ptr[u].via.u64), "fitness"));
            }
            msgpack_pack_map(&pk, 3);
            put_key(&pk, "type"); put_key(&pk, "result");
            put_key(&pk, "id"); msgpack_pack_uint64(&pk, id ? id->via.u64 : 0);
            put_key(&pk, "fitness"); msgpack_pack_double(&pk, f);
            reply(&sb);
        } else if (is(t, "bye")) break;
    }
    json_decref(problem);
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
