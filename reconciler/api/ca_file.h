/* ca_file.h - checks an agent's --ca-file once, before it is handed to libcurl. */
#ifndef MESHCA_API_CA_FILE_H
#define MESHCA_API_CA_FILE_H

#include "manifests/error.h"

/* 0 when PATH is a readable file holding at least one PEM certificate. Otherwise
 * MESHCA_EIO (cannot be read: missing, a directory, no permission) or MESHCA_EINVAL (read,
 * but no PEM certificate in it), with a message naming PATH and what to pass instead. */
int api_ca_file_check(const char *path, char *errbuf);

#endif
