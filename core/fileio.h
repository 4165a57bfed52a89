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
