/* status.c -- evb_strerror and the error funnel (see include/evobudget/evb_status.h).
 * The last error is kept per thread so that concurrent evaluations never overwrite each other's message. */
#include "evobudget/evb_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *evb_strerror(int status) {
    switch (status) {
    case EVB_CONTINUE: return "continue";
    case EVB_SUCCESS:  return "success";
    case EVB_EINVAL:   return "invalid argument";
    case EVB_ENOMEM:   return "out of memory";
    case EVB_EIO:      return "input/output error";
    case EVB_EFORMAT:  return "malformed input";
    case EVB_EBADFUNC: return "bad function value";
    case EVB_EBUDGET:  return "budget cannot be met";
    case EVB_EMAXITER: return "iteration limit reached";
    case EVB_ERANGE:   return "value out of range";
    default:           return "unknown status";
    }
}

int evb_error(const char *reason, const char *file, int line, int status) {
    snprintf(last_error, sizeof last_error, "%s", reason ? reason : evb_strerror(status));
    if (getenv("EVB_VERBOSE_ERRORS")) fprintf(stderr, "evobudget: %s:%d: %s\n", file, line, last_error);
    return status;
}

int evb_errorf(const char *file, int line, int status, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return evb_error(buf, file, line, status);
}

const char *evb_last_error(void) { return last_error; }

void evb_clear_error(void) { last_error[0] = '\0'; }

void evb_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "evobudget: internal error: %s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}
