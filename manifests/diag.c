/* diag.c - the diagnostics list: collecting, counting, moving and sorting problems. */
#include "manifests/diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A library never aborts: a diagnostic that cannot be stored is dropped and the list marked
 * out_of_memory, which every command that prints diagnostics turns into exit 2. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

/* Output formats are line-oriented (text, github), so a message is one line. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
}

void diag_addv(diag_list *list, diag_severity severity, const char *code, const source_mark *mark,
               const char *path, const char *fmt, va_list ap)
{
    /* Measure with a small buffer first; most messages fit and need only one pass. */
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *msg = malloc((size_t)n + 1);
    if (!msg) {
        list->out_of_memory = true;
        return;
    }
    if ((size_t)n < sizeof(small))
        memcpy(msg, small, (size_t)n + 1);
    else if (vsnprintf(msg, (size_t)n + 1, fmt, ap) < 0)
        msg[0] = '\0';
    one_line(msg);

    char *code_copy = dup_str(code ? code : "");
    char *file_copy = (mark && mark->file) ? dup_str(mark->file) : NULL;
    char *path_copy = dup_str(path ? path : "");
    if (!code_copy || (mark && mark->file && !file_copy) || !path_copy)
        goto oom;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 8;
        diag *items = realloc(list->items, capacity * sizeof(*list->items));
        if (!items)
            goto oom;
        list->items = items;
        list->capacity = capacity;
    }
    diag *d = &list->items[list->count++];
    d->severity = severity;
    d->code = code_copy;
    d->file = file_copy;
    d->line = mark ? mark->line : 0;
    d->column = mark ? mark->column : 0;
    d->path = path_copy;
    d->message = msg;
    return;

oom:
    free(code_copy);
    free(file_copy);
    free(path_copy);
    free(msg);
    list->out_of_memory = true;
}

void diag_add(diag_list *list, diag_severity severity, const char *code, const source_mark *mark,
              const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_addv(list, severity, code, mark, path, fmt, ap);
    va_end(ap);
}

size_t diag_count(const diag_list *list, diag_severity severity)
{
    size_t n = 0;
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].severity == severity)
            n++;
    return n;
}

int diag_has_errors(const diag_list *list)
{
    return diag_count(list, DIAG_ERROR) > 0;
}

void diag_list_move(diag_list *to, diag_list *from)
{
    if (from->out_of_memory)
        to->out_of_memory = true;
    from->out_of_memory = false;
    if (from->count == 0)
        return;
    if (to->count + from->count > to->capacity) {
        size_t capacity = to->count + from->count;
        diag *items = realloc(to->items, capacity * sizeof(*to->items));
        if (!items) {
            to->out_of_memory = true;
            diag_list_free(from);
            return;
        }
        to->items = items;
        to->capacity = capacity;
    }
    memcpy(to->items + to->count, from->items, from->count * sizeof(*from->items));
    to->count += from->count;
    free(from->items);
    from->items = NULL;
    from->count = from->capacity = 0;
}

static int diag_cmp(const diag *a, const diag *b)
{
    if (!a->file || !b->file) {
        if (a->file == b->file)
            return 0;
        return a->file ? -1 : 1;
    }
    int c = strcmp(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->column != b->column)
        return a->column < b->column ? -1 : 1;
    return 0;
}

/* Insertion sort: stable, and diagnostic lists are short. */
void diag_list_sort(diag_list *list)
{
    for (size_t i = 1; i < list->count; i++) {
        diag tmp = list->items[i];
        size_t j = i;
        while (j > 0 && diag_cmp(&list->items[j - 1], &tmp) > 0) {
            list->items[j] = list->items[j - 1];
            j--;
        }
        list->items[j] = tmp;
    }
}

void diag_list_free(diag_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].code);
        free(list->items[i].file);
        free(list->items[i].path);
        free(list->items[i].message);
    }
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
    list->out_of_memory = false;
}
