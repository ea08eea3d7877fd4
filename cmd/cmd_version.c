/* cmd_version.c - `meshca version`: meshca's version and the libraries it runs with, for bug reports. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <yaml.h>

#include "cmd/cli.h"

const char cmd_version_usage[] =
    "Usage: meshca version\n"
    "\n"
    "Prints meshca's version, then the version of each library it runs with (OpenSSL, SQLite,\n"
    "libcurl, libevent, libyaml, jansson), as loaded at run time: what a bug report needs.\n"
    "`meshca --version` prints the first line only.\n"
    "\n"
    "Exit codes: 0 ok; 2 usage error.\n";

int cmd_version(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(cmd_version_usage, stdout);
        return EXIT_OK;
    }
    if (argc > 1) {
        cli_error("version takes no arguments; run 'meshca help version'");
        return EXIT_TROUBLE;
    }
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    printf("meshca %s\n", MESHCA_VERSION);
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("SQLite %s\n", sqlite3_libversion());
    printf("libcurl %s\n", curl && curl->version ? curl->version : "unknown");
    printf("libevent %s\n", event_get_version());
    printf("libyaml %s\n", yaml_get_version_string());
    printf("jansson %s\n", jansson_version_str());
    return EXIT_OK;
}
