/* decode.c - YAML bytes to mnode document trees with marks, enforcing the S2 input limits. */
#include "manifests/manifest.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct anchor {
    char *name;
    /* Borrowed: lives in the current document's tree. NULL once that node was dropped (a refused
     * key and its value, or a half-built node on failure): the entry stays so that it still
     * shadows an earlier anchor of the same name, and an alias to it is an error. */
    const mnode *node;
    size_t count;        /* nodes in the subtree, so an alias costs O(1) to price */
} anchor;

typedef struct decoder {
    yaml_parser_t parser;
    const char *name;
    const char *data;
    size_t len;
    diag_list *diags;
    anchor *anchors;
    size_t nanchors, canchors;
    size_t alias_nodes;  /* nodes created by alias expansion so far in this file */
    bool failed;         /* a fatal problem was reported: stop parsing this file */
} decoder;

static void report_oom(decoder *d)
{
    if (!d->failed)
        diag_error(d->diags, "out-of-memory", NULL, "", "out of memory while parsing YAML");
    d->diags->out_of_memory = true;
    d->failed = true;
}

static source_mark to_mark(const decoder *d, yaml_mark_t m)
{
    /* libyaml marks are 0-based. */
    return (source_mark){d->name, (unsigned)m.line + 1, (unsigned)m.column + 1};
}

/* Reader errors carry only a byte offset; recover line and column from the buffer. */
static source_mark offset_mark(const decoder *d, size_t offset)
{
    source_mark m = {d->name, 1, 1};
    for (size_t i = 0; i < offset && i < d->len; i++) {
        if (d->data[i] == '\n') {
            m.line++;
            m.column = 1;
        } else {
            m.column++;
        }
    }
    return m;
}

static void report_parser_error(decoder *d)
{
    yaml_parser_t *p = &d->parser;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    d->failed = true;
    if (p->error == YAML_MEMORY_ERROR) {
        diag_error(d->diags, "out-of-memory", NULL, "", "out of memory while parsing YAML");
        d->diags->out_of_memory = true;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        source_mark m = offset_mark(d, p->problem_offset);
        diag_error(d->diags, "bad-encoding", &m, "", "invalid input: %s (byte 0x%02x at offset %zu); manifests must be UTF-8 text",
                   problem, (unsigned)(p->problem_value & 0xff), p->problem_offset);
        return;
    }
    source_mark m = to_mark(d, p->problem_mark);
    size_t idx = p->problem_mark.index;
    /* libyaml's wording for a tab in indentation is obscure; say what to do about it. */
    if (idx < d->len && d->data[idx] == '\t') {
        diag_error(d->diags, "tab-indent", &m, "",
                   "tab character where indentation or a token is expected; YAML indentation must use spaces");
        return;
    }
    if (p->context) {
        source_mark cm = to_mark(d, p->context_mark);
        diag_error(d->diags, "yaml-syntax", &m, "", "%s (%s at line %u, column %u)", problem,
                   p->context, cm.line, cm.column);
    } else {
        diag_error(d->diags, "yaml-syntax", &m, "", "%s", problem);
    }
}

static int next_event(decoder *d, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&d->parser, ev)) {
        report_parser_error(d);
        return -1;
    }
    return 0;
}

static void anchors_reset(decoder *d)
{
    for (size_t i = 0; i < d->nanchors; i++)
        free(d->anchors[i].name);
    d->nanchors = 0;
}

static int anchor_add(decoder *d, const char *name, const mnode *node, size_t count)
{
    if (d->nanchors == d->canchors) {
        size_t n = d->canchors ? d->canchors * 2 : 16;
        anchor *a = realloc(d->anchors, n * sizeof(*a));
        if (!a)
            return MANIFEST_ENOMEM;
        d->anchors = a;
        d->canchors = n;
    }
    char *copy = strdup(name);
    if (!copy)
        return MANIFEST_ENOMEM;
    d->anchors[d->nanchors++] = (anchor){copy, node, count};
    return 0;
}

/* Anchors are appended in document order, so every anchor defined inside a subtree was added
 * after the subtree started: the entries from `first` on name nodes that are about to be freed. */
static void anchors_drop_from(decoder *d, size_t first)
{
    for (size_t i = first; i < d->nanchors; i++)
        d->anchors[i].node = NULL;
}

static const anchor *anchor_find(const decoder *d, const char *name)
{
    /* A later anchor of the same name shadows an earlier one. */
    for (size_t i = d->nanchors; i-- > 0;)
        if (!strcmp(d->anchors[i].name, name))
            return &d->anchors[i];
    return NULL;
}

typedef struct key_ref {
    const mnode *key;
    size_t index;
} key_ref;

static int key_ref_cmp(const void *pa, const void *pb)
{
    const key_ref *a = pa, *b = pb;
    if (a->key->scalar_len != b->key->scalar_len)
        return a->key->scalar_len < b->key->scalar_len ? -1 : 1;
    int c = memcmp(a->key->scalar, b->key->scalar, a->key->scalar_len);
    if (c)
        return c;
    return a->index < b->index ? -1 : (a->index > b->index ? 1 : 0);
}

/* Sorting keeps this O(n log n): one mapping may hold hundreds of thousands of keys. */
static int check_duplicate_keys(decoder *d, const mnode *map)
{
    if (map->npairs < 2)
        return 0;
    key_ref *refs = calloc(map->npairs, sizeof(*refs));
    if (!refs)
        return MANIFEST_ENOMEM;
    for (size_t i = 0; i < map->npairs; i++)
        refs[i] = (key_ref){map->pairs[i].key, i};
    qsort(refs, map->npairs, sizeof(*refs), key_ref_cmp);
    size_t first = 0;
    for (size_t i = 1; i < map->npairs; i++) {
        const mnode *a = refs[first].key, *b = refs[i].key;
        if (a->scalar_len == b->scalar_len && !memcmp(a->scalar, b->scalar, a->scalar_len)) {
            diag_error(d->diags, "duplicate-key", &b->mark, "", "duplicate key '%.*s' (first at line %u)",
                       (int)(b->scalar_len > 200 ? 200 : b->scalar_len), b->scalar, a->mark.line);
        } else {
            first = i;
        }
    }
    free(refs);
    return 0;
}

static mnode *parse_node(decoder *d, yaml_event_t *ev, unsigned depth, size_t *ret_count);

/* Consumes the next event and parses the node it starts. */
static mnode *parse_next(decoder *d, unsigned depth, size_t *ret_count)
{
    yaml_event_t ev;
    if (next_event(d, &ev) < 0)
        return NULL;
    return parse_node(d, &ev, depth, ret_count);
}

static mnode *parse_alias(decoder *d, yaml_event_t *ev, size_t *ret_count)
{
    source_mark m = to_mark(d, ev->start_mark);
    const char *name = (const char *)ev->data.alias.anchor;
    const anchor *a = anchor_find(d, name);
    if (!a) {
        diag_error(d->diags, "undefined-alias", &m, "", "alias '*%s' refers to no anchor defined before it", name);
        *ret_count = 1;
        mnode *n = mnode_new_scalar("", 0, MNODE_PLAIN, m);
        if (!n)
            report_oom(d);
        return n;
    }
    if (!a->node) {
        /* The anchored node was inside a key the decoder refused and freed. */
        diag_error(d->diags, "undefined-alias", &m, "",
                   "alias '*%s' refers to an anchor inside a mapping key that was refused", name);
        *ret_count = 1;
        mnode *n = mnode_new_scalar("", 0, MNODE_PLAIN, m);
        if (!n)
            report_oom(d);
        return n;
    }
    /* Price the expansion before building it, so an alias bomb is refused in constant time. */
    if (a->count > MANIFEST_MAX_ALIAS_NODES - d->alias_nodes) {
        diag_error(d->diags, "alias-limit", &m, "",
                   "alias '*%s' would expand YAML aliases to more than %d nodes in this file", name,
                   MANIFEST_MAX_ALIAS_NODES);
        d->failed = true;
        return NULL;
    }
    d->alias_nodes += a->count;
    *ret_count = a->count;
    mnode *c = mnode_clone(a->node);
    if (!c)
        report_oom(d);
    return c;
}

static mnode *parse_node(decoder *d, yaml_event_t *ev, unsigned depth, size_t *ret_count)
{
    mnode *node = NULL;
    size_t count = 1;
    source_mark m = to_mark(d, ev->start_mark);
    const char *anchor_name = NULL;
    size_t first_anchor = d->nanchors;   /* anchors from here on name nodes of this subtree */

    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        node = parse_alias(d, ev, &count);
        yaml_event_delete(ev);
        *ret_count = count;
        return node;
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.length > MANIFEST_MAX_SCALAR_BYTES) {
            diag_error(d->diags, "scalar-too-long", &m, "", "scalar of %zu bytes is longer than the limit of %u bytes",
                       ev->data.scalar.length, MANIFEST_MAX_SCALAR_BYTES);
            d->failed = true;
            break;
        }
        mnode_style style = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? MNODE_PLAIN : MNODE_QUOTED;
        if (ev->data.scalar.tag && !strcmp((const char *)ev->data.scalar.tag, YAML_STR_TAG))
            style = MNODE_QUOTED;
        node = mnode_new_scalar((const char *)ev->data.scalar.value, ev->data.scalar.length, style, m);
        if (!node) {
            report_oom(d);
            break;
        }
        anchor_name = (const char *)ev->data.scalar.anchor;
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;
        if (depth > MANIFEST_MAX_DEPTH) {
            diag_error(d->diags, "too-deep", &m, "", "nesting deeper than %d levels", MANIFEST_MAX_DEPTH);
            d->failed = true;
            break;
        }
        node = is_map ? mnode_new_map(m) : mnode_new_seq(m);
        if (!node) {
            report_oom(d);
            break;
        }
        for (;;) {
            yaml_event_t child;
            if (next_event(d, &child) < 0)
                goto fail;
            if (child.type == YAML_SEQUENCE_END_EVENT || child.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&child);
                break;
            }
            size_t n = 0;
            size_t key_anchors = d->nanchors;
            mnode *item = parse_node(d, &child, depth + 1, &n);
            if (!item)
                goto fail;
            count += n;
            if (!is_map) {
                if (mnode_seq_append(node, item) < 0) {
                    report_oom(d);
                    goto fail;
                }
                continue;
            }
            mnode *value = parse_next(d, depth + 1, &n);
            if (!value) {
                mnode_free(item);
                goto fail;
            }
            count += n;
            if (item->kind != MNODE_SCALAR) {
                diag_error(d->diags, "complex-key", &item->mark, "", "a mapping key must be a scalar, not a %s",
                           mnode_type_name(item));
                anchors_drop_from(d, key_anchors);   /* an alias must not reach the freed pair */
                mnode_free(item);
                mnode_free(value);
            } else if (item->style == MNODE_PLAIN && !strcmp(item->scalar, "<<")) {
                diag_error(d->diags, "merge-key", &item->mark, "", "merge keys ('<<') are not supported; write the fields out");
                anchors_drop_from(d, key_anchors);
                mnode_free(item);
                mnode_free(value);
            } else if (mnode_map_append(node, item, value) < 0) {
                report_oom(d);
                goto fail;
            }
        }
        if (is_map && check_duplicate_keys(d, node) < 0) {
            report_oom(d);
            goto fail;
        }
        anchor_name = is_map ? (const char *)ev->data.mapping_start.anchor
                             : (const char *)ev->data.sequence_start.anchor;
        break;
    }
    default:
        diag_error(d->diags, "yaml-syntax", &m, "", "unexpected YAML event");
        d->failed = true;
        break;
    }
    if (node && anchor_name && anchor_add(d, anchor_name, node, count) < 0) {
        report_oom(d);
        goto fail;
    }
    yaml_event_delete(ev);
    *ret_count = count;
    return node;
fail:
    anchors_drop_from(d, first_anchor);
    mnode_free(node);
    yaml_event_delete(ev);
    return NULL;
}

int manifest_parse_documents(const char *name, const char *data, size_t len, mnode ***ret_docs,
                             size_t *ret_ndocs, diag_list *diags)
{
    mnode **docs = NULL;
    size_t ndocs = 0, cdocs = 0;
    source_mark file_mark = {name, 0, 0};

    if (len > MANIFEST_MAX_FILE_BYTES) {
        diag_error(diags, "too-large", &file_mark, "", "file of %zu bytes is larger than the limit of %u bytes",
                   len, MANIFEST_MAX_FILE_BYTES);
        *ret_docs = NULL;
        *ret_ndocs = 0;
        return MANIFEST_OK;
    }

    decoder d = {.name = name, .data = data, .len = len, .diags = diags};
    if (!yaml_parser_initialize(&d.parser))
        return MANIFEST_ENOMEM;
    yaml_parser_set_input_string(&d.parser, (const unsigned char *)data, len);

    yaml_event_t ev;
    while (!d.failed && next_event(&d, &ev) == 0) {
        yaml_event_type_t type = ev.type;
        source_mark m = to_mark(&d, ev.start_mark);
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
        if (type != YAML_DOCUMENT_START_EVENT)
            continue;   /* STREAM_START, DOCUMENT_END */
        if (ndocs >= MANIFEST_MAX_DOCUMENTS) {
            diag_error(diags, "too-many-documents", &m, "", "more than %d YAML documents in one file",
                       MANIFEST_MAX_DOCUMENTS);
            break;
        }
        anchors_reset(&d);   /* anchors are scoped to their document */
        size_t count = 0;
        mnode *root = parse_next(&d, 1, &count);
        if (!root)
            break;
        if (ndocs == cdocs) {
            size_t n = cdocs ? cdocs * 2 : 8;
            mnode **nd = realloc(docs, n * sizeof(*nd));
            if (!nd) {
                mnode_free(root);
                report_oom(&d);
                break;
            }
            docs = nd;
            cdocs = n;
        }
        docs[ndocs++] = root;
    }
    anchors_reset(&d);
    free(d.anchors);
    yaml_parser_delete(&d.parser);
    *ret_docs = docs;
    *ret_ndocs = ndocs;
    return MANIFEST_OK;
}
