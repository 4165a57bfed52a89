/* make_standin.c -- writes tests/standin.h's stand-in for stories260K (DIR/standin.bin, DIR/tok512.bin) for the
 * shell tests, which run on it where ../shared/data is missing. Usage: make_standin DIR */
#include "standin.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_standin DIR\n"); return 2; }
    char model[1024], calib[1024];
    int st = standin_or_stories(argv[1], model, sizeof model, calib, sizeof calib);
    if (st < 0) { fprintf(stderr, "make_standin: cannot write the stand-in in %s\n", argv[1]); return 1; }
    printf("%s\n%s\n", model, calib);
    return 0;
}
