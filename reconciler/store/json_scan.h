/* json_scan.h - the JSON scanning steps the identity record readers (identity_peek, identity_json) share. */
#ifndef MESHCA_JSON_SCAN_H
#define MESHCA_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The text left to read: [p, end). */
typedef struct json_scan {
    const char *p, *end;
} json_scan;

/* Skips JSON white space. */
void json_scan_ws(json_scan *s);

/* Reads `word` (true, false, null) at s->p; false, reading nothing, when it is not there. */
bool json_scan_literal(json_scan *s, const char *word);

/* The closing quote of the string whose content starts at `start` (a quote preceded by an odd
 * number of backslashes is escaped), or NULL when there is none before `end`. */
const char *json_scan_closing_quote(const char *start, const char *end);

/* An integer as JSON writes it (no leading zeros, no fraction or exponent: those are reals,
 * which identity records never hold), within long long. */
bool json_scan_integer(json_scan *s, long long *ret);

/* White space, the '{' of an object that has members (an empty one is no record), white space. */
bool json_scan_object(json_scan *s);

/* After a key (white space around it skipped): the ':' before its value. */
bool json_scan_colon(json_scan *s);

/* After a member or element: 1 past a ',' (another follows), 0 past `close` (the last), -1 for
 * anything else. White space before it is skipped. */
int json_scan_next(json_scan *s, char close);

/* The character the simple escape \c stands for (\" \\ \/ \b \f \n \r \t), or -1 (\u, which
 * each reader takes or refuses itself, and anything else). */
int json_scan_unescape(unsigned char c);

/* Reads one string at s->p into a new allocation (*ret; caller frees). */
typedef bool json_scan_string_fn(json_scan *s, char **ret);

/* An array of strings, or null (no names): *ret is NULL-terminated, *ret_n counts the names.
 * `string` reads each element (each reader unescapes as far as it goes). */
bool json_scan_string_array(json_scan *s, json_scan_string_fn *string, char ***ret, size_t *ret_n);

#endif
