/* fileio.h -- the one atomic file write and the one advisory lock of evobudget (core/).
 *
 * Every file the library writes (database payloads and index, checkpoints, run-directory files, exported
 * models) goes through evb_write_atomic: the bytes go to a temporary sibling, are fsync'd, renamed over the
 * target, and the directory is fsync'd, so a reader sees the old file or the new one, never half of either.
 *
 * Writers of a level database or a run directory hold an exclusive flock on DIR/.lock (evb_lock_dir);
 * readers that must not see a writer's intermediate state take it shared. The lock is released when the
 * descriptor is closed (evb_unlock_dir) or the process ends, so a killed writer never leaves it held. */
#ifndef EVB_CORE_FILEIO_H
#define EVB_CORE_FILEIO_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

/* Writes n bytes to path atomically (temporary sibling, fsync, rename, fsync of the directory).
 * EVB_EIO with a message naming path and the system's reason on failure; the old file is then untouched. */
int evb_write_atomic(const char *path, const void *data, size_t n);

/* The same for a writer that produces its output through stdio: fn(f, ctx) writes the contents and returns
 * an EVB_* status; anything but EVB_SUCCESS (or a write error on f) leaves the old file untouched. */
int evb_write_atomic_with(const char *path, int (*fn)(FILE *f, void *ctx), void *ctx);

/* The hint that follows a failed write's message for errno e: " (hint: ...)", never empty. */
const char *evb_write_hint(int e);

/* fsyncs the directory holding path (after a rename into it). */
int evb_fsync_parent(const char *path);

/* Copies the file src to dst through evb_write_atomic_with. EVB_EIO naming the file and the reason. */
int evb_copy_atomic(const char *src, const char *dst);

/* ---- the atomic directory write ----
 *
 * A directory is written whole or not at all: every file goes into a stage beside the target,
 * TARGET.tmp.<pid> (evb_dir_stage_begin), which evb_dir_stage_commit fsyncs and renames to TARGET, and then
 * fsyncs the parent. A killed or failed writer leaves TARGET as it was (absent, or the old directory) and a
 * stage no reader takes for TARGET; the next evb_dir_stage_begin for the same target removes the stages
 * (and TARGET.old.<pid> directories) of processes that no longer run. An existing TARGET is replaced only
 * when asked, and then only once the stage is complete: swapped with it in one rename (RENAME_EXCHANGE) and
 * removed after; where the file system cannot swap, it is renamed aside to TARGET.old.<pid> first and renamed
 * back if the second rename fails. Nothing is printed: errors are EVB_* statuses with messages, and a
 * directory that could not be removed afterwards is named in `left` for the caller to report. */
typedef struct evb_dir_stage {
    char target[PATH_MAX];      /* the directory being written: absolute, symbolic links resolved */
    char path[PATH_MAX + 32];   /* the stage the caller writes into; "" once committed or removed */
    char left[PATH_MAX + 32];   /* "" or a directory that could not be removed: after a commit the replaced
                                   one, after a failure or evb_dir_stage_abort the unfinished stage */
    int  left_errno;            /* why `left` could not be removed */
} evb_dir_stage;

/* The absolute path that path names, symbolic links resolved: path itself when it exists, else its parent's
 * real path and path's last component (trailing slashes ignored). EVB_EIO with a hint when neither resolves. */
int evb_dir_resolve(const char *path, char *canon, size_t n);

/* Refuses a target that is, lies inside or contains one of paths[0..n-1] (a NULL or missing one is skipped;
 * what[i] names paths[i]): writing it, or replacing it, would destroy what it was made from. Compares device
 * and inode of the target, the paths and their ancestors, so links and bind mounts are seen through.
 * EVB_EINVAL with "TARGET is|lies inside|contains WHAT PATH" (no hint: the caller knows why it reads them);
 * EVB_EIO when target cannot be resolved (evb_dir_resolve). */
int evb_dir_check_apart(const char *target, const char *const *paths, const char *const *what, int n);

/* Resolves target (evb_dir_resolve), removes stale stages of it and creates an empty stage st->path.
 * EVB_EIO when the stage cannot be created (st->path is then ""). */
int evb_dir_stage_begin(evb_dir_stage *st, const char *target);

/* Renames the complete stage to the target after fsyncing it, then fsyncs the parent. An existing target is
 * replaced when `replace` is set, and only when empty otherwise (rename(2) refuses a non-empty one, so a
 * directory filled since the caller's check is kept). On failure (EVB_EIO, the target as it was) the stage
 * is removed. On success st->left may name the replaced directory, when it could not be removed. */
int evb_dir_stage_commit(evb_dir_stage *st, int replace);

/* Removes an unfinished stage (no-op when there is none); st->left names it when that fails. */
void evb_dir_stage_abort(evb_dir_stage *st);

/* Removes the tree at path without following symbolic links or crossing mounts; a missing path is fine.
 * EVB_EIO naming the entry that could not be removed. */
int evb_dir_remove_tree(const char *path);

/* 1 when path is a directory with no entries, or cannot be read; else 0. */
int evb_dir_is_empty(const char *path);

enum { EVB_LOCK_SHARED = 0, EVB_LOCK_EXCLUSIVE = 1 };

/* Takes an advisory lock on dir/.lock (created if absent). With wait = 0 a lock held by another process
 * gives EVB_EIO at once with a message saying the directory is in use; with wait != 0 it blocks. *fd gets the
 * descriptor to pass to evb_unlock_dir. */
int evb_lock_dir(const char *dir, int mode, int wait, int *fd);

/* The same, waiting: when another process holds the lock, on_wait(dir) is called once (to say so) before it
 * blocks until the lock is free. */
int evb_lock_dir_waiting(const char *dir, int mode, void (*on_wait)(const char *dir), int *fd);

/* Releases a lock taken by evb_lock_dir (fd < 0 is ignored). */
void evb_unlock_dir(int fd);

#endif
