/* ca_cache.c - opened CA backends kept across reconcile passes, reopened only when what they read changes; failing ones retried with backoff. */
#include "reconciler/ca/ca_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "manifests/node.h"
#include "reconciler/bundle.h"

#define DIGEST_HEX 65
#define MAX_FILE_READ (8 * 1024 * 1024)

/* One Secret or file the opening read, and what it held then ("" absent, "!" unreadable). */
typedef struct read_item {
    char *name;
    char digest[DIGEST_HEX];
} read_item;

typedef struct entry {
    char *mesh, *backend;
    /* What the CA was opened from. */
    char *type;
    mnode *conf;
    bool timeout_set;
    int64_t timeout_ms;
    read_item *secrets, *files;
    size_t nsecrets, nfiles;
    /* The outcome: a CA (opened again at reopen_at), or a failure and when to try again. */
    ca_backend *ca;
    int64_t reopen_at, warn_backoff_s;
    int code;
    char error[MESHCA_ERRBUF];
    int64_t retry_at, backoff_s;
    /* Signing failures of a CA that opened (Vault down after the chain was read). */
    int64_t sign_retry_at, sign_backoff_s;
    char sign_error[MESHCA_ERRBUF];
    bool seen;   /* opened through the cache since the last sweep */
    /* The mesh's trust bundle built last from this (enabled) backend's pass: bundle_build's
     * inputs, each with its NUL, and its output (ca_cache_bundle). */
    char *bundle_in, *bundle_pem;
    size_t bundle_in_len;
} entry;

struct ca_cache {
    entry *e;
    size_t n, cap;
    ca_cache_stats stats;
};

ca_cache *ca_cache_new(void)
{
    return calloc(1, sizeof(ca_cache));
}

static void items_free(read_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].name);
    free(items);
}

/* What it was opened from, not the entry's identity (mesh, backend). */
static void entry_clear_source(entry *e)
{
    free(e->type);
    mnode_free(e->conf);
    items_free(e->secrets, e->nsecrets);
    items_free(e->files, e->nfiles);
    e->type = NULL;
    e->conf = NULL;
    e->secrets = e->files = NULL;
    e->nsecrets = e->nfiles = 0;
}

static void entry_free(entry *e)
{
    entry_clear_source(e);
    ca_backend_free(e->ca);   /* wipes a key, a token */
    free(e->bundle_in);
    free(e->bundle_pem);
    free(e->mesh);
    free(e->backend);
    memset(e, 0, sizeof(*e));
}

void ca_cache_free(ca_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_free(&c->e[i]);
    free(c->e);
    free(c);
}

static void digest_hex(const void *data, size_t len, char *out)
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md)) {
        snprintf(out, DIGEST_HEX, "!");
        return;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The digest of a Secret as the lookup gives it now. */
static void secret_digest(const ca_context *ctx, const char *name, char *out)
{
    char *data = NULL;
    size_t len = 0;
    int rc = ctx->secret_lookup ? ctx->secret_lookup(ctx->secret_userdata, name, &data, &len)
                                : PKI_ENOENT;

    if (rc == 0)
        digest_hex(data, len, out);
    else
        snprintf(out, DIGEST_HEX, rc == PKI_ENOENT ? "" : "!");
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
}

static void file_digest(const char *path, char *out)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(MAX_FILE_READ) : NULL;
    size_t len = buf ? fread(buf, 1, MAX_FILE_READ, f) : 0;

    if (!f || !buf || ferror(f))
        snprintf(out, DIGEST_HEX, "!");
    else
        digest_hex(buf, len, out);
    if (buf) {
        OPENSSL_cleanse(buf, len);   /* may be a key file */
        free(buf);
    }
    if (f)
        fclose(f);
}

static int add_item(read_item **items, size_t *n, const char *name, const char *digest)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*items)[i].name, name) == 0)
            return 0;
    read_item *grown = realloc(*items, (*n + 1) * sizeof(**items));
    if (!grown)
        return MESHCA_ENOMEM;
    *items = grown;
    if (!(grown[*n].name = strdup(name)))
        return MESHCA_ENOMEM;
    snprintf(grown[*n].digest, DIGEST_HEX, "%s", digest);
    (*n)++;
    return 0;
}

/* Every `file: PATH` datasource of the conf, wherever it sits. */
static int collect_files(const mnode *node, entry *e)
{
    if (!node)
        return 0;
    if (node->kind == MNODE_SEQ) {
        for (size_t i = 0; i < node->nitems; i++)
            if (collect_files(node->items[i], e) < 0)
                return MESHCA_ENOMEM;
        return 0;
    }
    if (node->kind != MNODE_MAP)
        return 0;
    for (size_t i = 0; i < node->npairs; i++) {
        const mnode_pair *p = &node->pairs[i];
        if (p->key->scalar && strcmp(p->key->scalar, "file") == 0 && p->value->kind == MNODE_SCALAR &&
            p->value->scalar) {
            char d[DIGEST_HEX];
            file_digest(p->value->scalar, d);
            if (add_item(&e->files, &e->nfiles, p->value->scalar, d) < 0)
                return MESHCA_ENOMEM;
        } else if (collect_files(p->value, e) < 0) {
            return MESHCA_ENOMEM;
        }
    }
    return 0;
}

/* The opening's Secret lookups, recorded on their way through. */
typedef struct recorder {
    const ca_context *ctx;
    entry *e;
    bool oom;
} recorder;

static int record_lookup(void *userdata, const char *name, char **ret_data, size_t *ret_len)
{
    recorder *r = userdata;
    char d[DIGEST_HEX];
    int rc = r->ctx->secret_lookup(r->ctx->secret_userdata, name, ret_data, ret_len);

    if (rc == 0)
        digest_hex(*ret_data, *ret_len, d);
    else
        snprintf(d, DIGEST_HEX, rc == PKI_ENOENT ? "" : "!");
    if (add_item(&r->e->secrets, &r->e->nsecrets, name, d) < 0)
        r->oom = true;
    return rc;
}

/* ca_context's userdata serves lookup and store alike: the store goes through unchanged. */
static int pass_store(void *userdata, const ca_secret *secrets, size_t n)
{
    recorder *r = userdata;
    return r->ctx->secret_store(r->ctx->secret_userdata, secrets, n);
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Whether what the entry was opened from is what ctx has now. */
static bool same_source(const entry *e, const ca_context *ctx)
{
    const mesh_backend *b = ctx->backend;
    char d[DIGEST_HEX];

    if (!str_eq(e->type, b->type.value) || !mnode_equal(e->conf, b->conf) ||
        e->timeout_set != b->dp_cert.request_timeout.set ||
        (e->timeout_set && e->timeout_ms != b->dp_cert.request_timeout.ms))
        return false;
    for (size_t i = 0; i < e->nsecrets; i++) {
        secret_digest(ctx, e->secrets[i].name, d);
        if (strcmp(d, e->secrets[i].digest) != 0 || d[0] == '!')
            return false;
    }
    for (size_t i = 0; i < e->nfiles; i++) {
        file_digest(e->files[i].name, d);
        if (strcmp(d, e->files[i].digest) != 0 || d[0] == '!')
            return false;
    }
    return true;
}

static entry *find(ca_cache *c, const char *mesh_name, const char *backend)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (str_eq(c->e[i].mesh, mesh_name) && str_eq(c->e[i].backend, backend))
            return &c->e[i];
    return NULL;
}

static entry *find_or_add(ca_cache *c, const char *mesh_name, const char *backend)
{
    entry *e = find(c, mesh_name, backend);

    if (e)
        return e;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        entry *grown = realloc(c->e, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        c->e = grown;
        c->cap = cap;
    }
    e = &c->e[c->n];
    memset(e, 0, sizeof(*e));
    if (!(e->mesh = strdup(mesh_name)) || !(e->backend = strdup(backend))) {
        free(e->mesh);
        free(e->backend);
        return NULL;
    }
    c->n++;
    return e;
}


static int64_t next_backoff(int64_t cur)
{
    if (cur <= 0)
        return CA_CACHE_BACKOFF_FIRST_S;
    return cur * 2 > CA_CACHE_BACKOFF_MAX_S ? CA_CACHE_BACKOFF_MAX_S : cur * 2;
}

/* When an opened CA is opened again though nothing it reads changed: its opening does time
 * based work (cfssl renews its intermediate at two thirds of its life; a CA chain may rotate).
 * At the signing certificate's two-thirds point, at the latest after CA_CACHE_MAX_AGE_S; an
 * opening that came with a warning (cfssl down at the renewal point) again after a backoff. */
static int64_t reopen_time(entry *e, int64_t now)
{
    ca_info info;
    int64_t at = now + CA_CACHE_MAX_AGE_S;

    if (ca_backend_warning(e->ca)) {
        e->warn_backoff_s = next_backoff(e->warn_backoff_s);
        return now + e->warn_backoff_s;
    }
    e->warn_backoff_s = 0;
    if (ca_backend_info(e->ca, &info) == 0 && info.not_after > info.not_before) {
        int64_t renew = info.not_before + (info.not_after - info.not_before) / 3 * 2;
        if (renew < at)
            at = renew > now ? renew : now + CA_CACHE_BACKOFF_FIRST_S;
    }
    return at;
}

int ca_cache_open(ca_cache *c, const ca_context *ctx, ca_backend **ret, char *errbuf)
{
    const char *name = ctx->backend->name.value ? ctx->backend->name.value : "";
    entry *e = find_or_add(c, ctx->mesh ? ctx->mesh : "", name);

    if (!e)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    e->seen = true;
    bool same = e->type && same_source(e, ctx);
    if (same && e->ca && ctx->now < e->reopen_at) {
        c->stats.hits++;
        *ret = e->ca;
        return 0;
    }
    if (same && e->code < 0 && ctx->now < e->retry_at) {
        c->stats.backoffs++;
        snprintf(errbuf, MESHCA_ERRBUF, "%s", e->error);
        return e->code;
    }
    /* Open anew: what it read changed, or its backoff is over. */
    int64_t backoff = same ? e->backoff_s : 0;
    ca_backend_free(e->ca);
    e->ca = NULL;
    entry_clear_source(e);
    e->sign_retry_at = e->sign_backoff_s = 0;
    e->sign_error[0] = '\0';
    recorder r = {ctx, e, false};
    ca_context rctx = *ctx;
    if (ctx->secret_lookup) {
        rctx.secret_lookup = record_lookup;
        rctx.secret_store = ctx->secret_store ? pass_store : NULL;
        rctx.secret_userdata = &r;
    }
    c->stats.opens++;
    int rc = ca_backend_open(&rctx, &e->ca, errbuf);
    if (rc < 0)
        e->ca = NULL;
    if (r.oom || !(e->type = strdup(ctx->backend->type.value ? ctx->backend->type.value : "")) ||
        (ctx->backend->conf && !(e->conf = mnode_clone(ctx->backend->conf))) ||
        collect_files(ctx->backend->conf, e) < 0) {
        /* Without its source the entry cannot be trusted next time: forget it. */
        entry_clear_source(e);
        ca_backend_free(e->ca);
        e->ca = NULL;
        e->code = 0;
        return meshca_fail(errbuf, MESHCA_ENOMEM, "out of memory");
    }
    e->timeout_set = ctx->backend->dp_cert.request_timeout.set;
    e->timeout_ms = ctx->backend->dp_cert.request_timeout.ms;
    if (rc < 0) {
        e->code = rc;
        snprintf(e->error, sizeof(e->error), "%s", errbuf);
        e->backoff_s = next_backoff(backoff);
        e->retry_at = ctx->now + e->backoff_s;
        return rc;
    }
    e->code = 0;
    e->error[0] = '\0';
    e->backoff_s = 0;
    e->retry_at = 0;
    e->reopen_at = reopen_time(e, ctx->now);
    *ret = e->ca;
    return 0;
}

void ca_cache_sign_failed(ca_cache *c, const char *mesh_name, const char *backend, const char *message,
                          int64_t now)
{
    entry *e = find(c, mesh_name, backend);

    if (!e)
        return;
    e->sign_backoff_s = next_backoff(e->sign_backoff_s);
    e->sign_retry_at = now + e->sign_backoff_s;
    snprintf(e->sign_error, sizeof(e->sign_error), "%s", message ? message : "");
}

void ca_cache_sign_ok(ca_cache *c, const char *mesh_name, const char *backend)
{
    entry *e = find(c, mesh_name, backend);

    if (e) {
        e->sign_backoff_s = e->sign_retry_at = 0;
        e->sign_error[0] = '\0';
    }
}

bool ca_cache_sign_wait(ca_cache *c, const char *mesh_name, const char *backend, int64_t now,
                        char *errbuf)
{
    entry *e = find(c, mesh_name, backend);

    if (!e || !e->sign_backoff_s || now >= e->sign_retry_at)
        return false;
    c->stats.backoffs++;
    snprintf(errbuf, MESHCA_ERRBUF, "%s", e->sign_error);
    return true;
}

void ca_cache_prune(ca_cache *c, const char *mesh_name, const char *const *names, size_t n)
{
    for (size_t i = 0; c && i < c->n;) {
        bool keep = !str_eq(c->e[i].mesh, mesh_name);
        for (size_t k = 0; !keep && k < n; k++)
            keep = str_eq(c->e[i].backend, names[k]);
        if (keep) {
            i++;
            continue;
        }
        entry_free(&c->e[i]);
        c->e[i] = c->e[--c->n];
    }
}

void ca_cache_sweep(ca_cache *c)
{
    for (size_t i = 0; c && i < c->n;) {
        if (c->e[i].seen) {
            c->e[i++].seen = false;
            continue;
        }
        entry_free(&c->e[i]);
        c->e[i] = c->e[--c->n];
    }
}

void ca_cache_get_stats(const ca_cache *c, ca_cache_stats *ret)
{
    if (c)
        *ret = c->stats;
    else
        memset(ret, 0, sizeof(*ret));
}

/* The chains as one buffer, each with its NUL: equal buffers, equal bundle_build inputs. */
static char *bundle_key(const char *const *chains, size_t n, size_t *ret_len)
{
    size_t len = 0, off = 0;
    char *key;

    for (size_t i = 0; i < n; i++)
        len += (chains[i] ? strlen(chains[i]) : 0) + 1;
    if (!(key = malloc(len ? len : 1)))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = chains[i] ? strlen(chains[i]) : 0;

        memcpy(key + off, chains[i] ? chains[i] : "", l + 1);
        off += l + 1;
    }
    *ret_len = len;
    return key;
}

int ca_cache_bundle(ca_cache *c, const char *mesh_name, const char *enabled_backend,
                    const char *const *chains, size_t n, char **ret_pem, char *errbuf)
{
    entry *e = c ? find(c, mesh_name, enabled_backend) : NULL;
    size_t len = 0;
    char *key, *pem;
    int r;

    if (!e)
        return bundle_build(chains, n, 0, ret_pem, errbuf);
    if (!(key = bundle_key(chains, n, &len)))
        return MESHCA_ENOMEM;
    if (e->bundle_pem && e->bundle_in_len == len && memcmp(e->bundle_in, key, len) == 0) {
        free(key);
        c->stats.bundle_hits++;
        return (*ret_pem = strdup(e->bundle_pem)) ? 0 : MESHCA_ENOMEM;
    }
    if ((r = bundle_build(chains, n, 0, ret_pem, errbuf)) < 0 || !(pem = strdup(*ret_pem))) {
        free(key);
        return r < 0 ? r : 0;   /* no copy to keep: built, not cached */
    }
    free(e->bundle_in);
    free(e->bundle_pem);
    e->bundle_in = key;
    e->bundle_in_len = len;
    e->bundle_pem = pem;
    return 0;
}
