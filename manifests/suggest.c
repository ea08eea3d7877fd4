/* suggest.c - did-you-mean suggestions for misspelt field and kind names (Levenshtein distance). */
#include "manifests/manifest.h"

#include <stdlib.h>
#include <string.h>

/* Names compared here are field names, so a small bound keeps the row on the stack. */
#define SUGGEST_MAX_LEN 128

/* ASCII only, unlike tolower(): independent of the locale. */
static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[SUGGEST_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t corner = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            /* Case is ignored: `type: BUILTIN` is still an error (Kuma's values are
             * case-sensitive), but 'builtin' is plainly what was meant. */
            size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
            size_t best = corner + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            corner = up;
        }
    }
    return row[lb];
}

const char *manifest_suggest(const char *word, const char *const *candidates)
{
    if (!word || !candidates)
        return NULL;
    size_t lw = strlen(word);
    if (lw > SUGGEST_MAX_LEN)
        return NULL;
    size_t limit = lw / 3 > 2 ? lw / 3 : 2;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; candidates[i]; i++) {
        if (strlen(candidates[i]) > SUGGEST_MAX_LEN)
            continue;
        size_t d = distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}
