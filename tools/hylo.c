/* hylo.c: the command line: dispatches `hylo COMMAND ...` to tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "hylo.h"

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("hylo %s\n", HYLO_VERSION);
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "hylo: unknown command '%s'\n", argv[1]);
    return 2;
}
