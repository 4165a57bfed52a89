/* evb_plugin.h -- a fitness in a shared object, for `evobudget search --problem FILE --fitness-plugin lib.so`
 * and for programs that link the library.
 *
 * The shared object exports one function, evb_plugin_entry, returning a description of the plug-in:
 *
 *     #include <evobudget/evb_plugin.h>
 *     static const evb_plugin me = {EVB_PLUGIN_ABI, "my-fitness", &my_fitness_type, my_create, my_destroy};
 *     const evb_plugin *evb_plugin_entry(void) { return &me; }
 *
 * evobudget checks abi against EVB_PLUGIN_ABI and refuses another value. create receives the problem file's
 * path and the units' level counts and returns the fitness's params (read-only during the search; NULL is an
 * error, reported with evb_last_error's message when the plug-in records one through evb_errorf); destroy
 * releases them. The fitness type follows evb_search.h's contract (workspaces per thread, no OpenMP regions
 * of its own, lower is better). examples/plugin/ holds a complete plug-in. */
#ifndef EVB_PLUGIN_H
#define EVB_PLUGIN_H

#include "evobudget/evb_search.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_PLUGIN_ABI 1

typedef struct evb_plugin {
    int abi;                                   /* EVB_PLUGIN_ABI of the headers it was built with */
    const char *name;
    const evb_fitness_type *fitness;
    void *(*create)(const char *problem_path, int n_units, const int *n_levels);
    void  (*destroy)(void *params);
} evb_plugin;

typedef const evb_plugin *(*evb_plugin_entry_fn)(void);
#define EVB_PLUGIN_ENTRY "evb_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif
