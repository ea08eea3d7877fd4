/* internal.h - helpers shared by the validator files; not part of the public contract. */
#ifndef MESHCA_VALIDATORS_INTERNAL_H
#define MESHCA_VALIDATORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "manifests/diag.h"
#include "manifests/model.h"

/* validate_backend_conf (conf.c) is public: validators.h. */

#endif
