/* rundir.h -- the run directory of `search` (cli/rundir.c). Each function prints its error and returns an
 * exit code, except log_truncate (a library status). */
#ifndef EVB_CLI_RUNDIR_H
#define EVB_CLI_RUNDIR_H
#include <jansson.h>
#include <stdio.h>

typedef struct run_flags { int resume, force; } run_flags;

int mkdirs(const char *path);
/* dir/name written atomically (core/fileio.h); JSON indented (core/json.h). */
int write_text(const char *dir, const char *name, const char *text);
int write_json(const char *dir, const char *name, json_t *j);
/* Creates dir, takes its lock for the rest of the process (one writer), removes temporary files a killed
 * writer left, and refuses a directory holding a finished run (done_name) or an unfinished one (a checkpoint)
 * unless --resume continues it or --force starts over. --resume needs dir/resume_name (a checkpoint; "." for a
 * sweep's directory) or a finished run. */
int rundir_open(const char *dir, const run_flags *f, const char *done_name, const char *resume_name, int *lock_fd);
/* With --force, removes the run's files: called once the inputs are loaded and checked, so that bad input
 * leaves the run there as it was. */
void rundir_start_over(const char *dir, const run_flags *f);
/* On resume: cuts log.jsonl after the last line of a generation the checkpoint holds (a run killed between
 * its log line and its checkpoint logged one generation more), and any unfinished last line. */
int log_truncate(FILE *log, const char *path, int generation);
/* Writes dir/manifest.json; on resume first compares it with the run's own and refuses, naming the first
 * parameter that differs (paths, versions and the generation count may change). */
int rundir_manifest(const char *dir, json_t *man, int resume);
#endif
