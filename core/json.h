/* json.h -- small helpers over Jansson for reading and writing JSON files with one-line errors that name
 * the file, the key and what is wrong (private to the library: checkpoints, exports, the program). */
#ifndef EVB_CORE_JSON_H
#define EVB_CORE_JSON_H
#include <jansson.h>

/* Parses the file at path. A missing file is EVB_EIO, a syntax error EVB_EFORMAT naming line and column. */
int evb_json_load_file(const char *path, json_t **out);

/* Writes j to path through evb_write_atomic_with (indent spaces per level, keys in insertion order); a
 * write error names path with the errno's hint. */
int evb_json_write_file(const char *path, const json_t *j, int indent);
/* Parses len bytes of JSON text; "what" names the source in messages. */
int evb_json_load_buffer(const char *buf, size_t len, const char *what, json_t **out);

/* Reads an integer member. A missing member gives dflt when required is 0, else EVB_EFORMAT; a member of
 * the wrong type or outside [lo, hi] is EVB_EFORMAT. */
int evb_json_int(const json_t *obj, const char *key, int required, long long dflt, long long lo, long long hi,
                 long long *out, const char *path);
/* Reads a number member (integer or real), same rules; NaN/Inf are rejected. */
int evb_json_num(const json_t *obj, const char *key, int required, double dflt, double *out, const char *path);
/* Reads a boolean member (a missing one gives dflt). */
int evb_json_bool(const json_t *obj, const char *key, int dflt, int *out, const char *path);
#endif
