/* reconciler.c - version information of the reconciler library. */
#include "reconciler/reconciler.h"

const char *reconciler_version(void)
{
    return "0.1.0";
}
