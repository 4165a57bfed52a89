/* evb_status.h -- the one status enum of evobudget and its error funnel.
 *
 * Every library function that can fail returns an int status: EVB_SUCCESS (0), a negative non-error
 * (EVB_CONTINUE), or a positive EVB_E* error. Errors are raised through EVB_ERROR / EVB_ERRORF, which call
 * evb_error() (one place to put a breakpoint) and return the code. The library never exits: evb_error()
 * records a one-line message in a thread-local buffer that the caller reads with evb_last_error(); the CLI
 * prints it and turns the status into an exit code. EVB_ASSERT is for programmer errors only. */
#ifndef EVB_STATUS_H
#define EVB_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum evb_status {
    EVB_CONTINUE = -2, /* an iteration finished, more to do */
    EVB_SUCCESS  = 0,
    EVB_EINVAL   = 1,  /* an invalid argument or option value */
    EVB_ENOMEM   = 2,  /* an allocation failed */
    EVB_EIO      = 3,  /* a file could not be opened, read, written or mapped */
    EVB_EFORMAT  = 4,  /* a file's contents are malformed: bad magic, version, header, JSON, shape */
    EVB_EBADFUNC = 5,  /* a user function returned NaN/Inf or an error */
    EVB_EBUDGET  = 6,  /* a budget cannot be met */
    EVB_EMAXITER = 7,  /* an iteration limit was reached */
    EVB_ERANGE   = 8,  /* a value lies outside its allowed range (a token id outside the vocabulary) */
};

/* A short fixed description of a status code ("invalid argument", ...). */
const char *evb_strerror(int status);

/* Records "reason" (already formatted) as this thread's last error and returns status. When the
 * environment variable EVB_VERBOSE_ERRORS is set it also prints file:line to stderr. */
int evb_error(const char *reason, const char *file, int line, int status);

/* printf-style variant of evb_error. */
int evb_errorf(const char *file, int line, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The message of this thread's last error ("" if none). Valid until the next error on this thread. */
const char *evb_last_error(void);

/* Clears this thread's last error. */
void evb_clear_error(void);

#define EVB_ERROR(reason, status) return evb_error((reason), __FILE__, __LINE__, (status))
#define EVB_ERRORF(status, ...) return evb_errorf(__FILE__, __LINE__, (status), __VA_ARGS__)
/* Records the error but evaluates to the status instead of returning (for cleanup paths). */
#define EVB_RAISEF(status, ...) evb_errorf(__FILE__, __LINE__, (status), __VA_ARGS__)

/* Broken internal invariants (never user input): print file, line and condition, then abort. */
void evb_assert_fail(const char *cond, const char *file, int line);
#define EVB_ASSERT(x) do { if (!(x)) evb_assert_fail(#x, __FILE__, __LINE__); } while (0)

#ifdef __cplusplus
}
#endif
#endif
