/* ack.c - a dataplane's acknowledgement (API PUT .../ack): records what its proxy loaded (S7). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "manifests/manifest.h"
#include "reconciler/ack.h"
#include "reconciler/pki.h"
#include "reconciler/state.h"

/* strdup that tells a missing source (NULL, fine) from a failed copy (*failed = true). */
static char *dup_or_flag(const char *src, bool *failed)
{
    if (!src)
        return NULL;
    char *d = strdup(src);
    if (!d)
        *failed = true;
    return d;
}

/* The dataplane's tags from the store, as a model_tag array (caller frees with free_tags).
 * A dataplane that cannot be read leaves the tags out (0, *ret NULL); only memory fails. */
static void free_tags(model_tag *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
}

static int load_tags(store *s, const char *mesh_name, const char *dp, model_tag **ret, size_t *ret_n)
{
    store_key key = {STATE_DATAPLANES, mesh_name, dp};
    char *value = NULL;
    size_t len = 0;
    int rc = 0;
    *ret = NULL;
    *ret_n = 0;
    if (store_get(s, &key, &value, &len, NULL) < 0)
        return 0;
    manifest_set *set = manifest_set_new();
    diag_list ignored = DIAG_LIST_INIT;
    if (!set) {
        rc = MESHCA_ENOMEM;
    } else if (manifest_load_buffer(set, "store", value, len, &ignored) == 0 &&
               manifest_set_count(set) == 1 &&
               manifest_set_get(set, 0)->kind == RESOURCE_DATAPLANE) {
        const dataplane *d = &manifest_set_get(set, 0)->u.dataplane;
        model_tag *tags = calloc(dataplane_tag_count(d) + 1, sizeof(*tags));
        size_t k = 0;
        bool oom = !tags;
        dataplane_tag_iter it = DATAPLANE_TAG_ITER_INIT(d);
        for (const model_tag *src; !oom && (src = dataplane_tag_next(&it)) != NULL;) {
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++)
                dup = strcmp(tags[j].key, src->key) == 0;
            if (dup)   /* one value per key in the status object */
                continue;
            tags[k].key = dup_or_flag(src->key, &oom);
            tags[k].value = dup_or_flag(src->value, &oom);
            k++;
        }
        if (oom) {
            free_tags(tags, k);
            rc = MESHCA_ENOMEM;
        } else {
            *ret = tags;
            *ret_n = k;
        }
    }
    diag_list_free(&ignored);
    manifest_set_free(set);
    free(value);
    return rc;
}

/* Replaces *field by a copy of value; *oom set when the copy failed. */
static void set_field(char **field, const char *value, bool *oom)
{
    free(*field);
    *field = dup_or_flag(value, oom);
}

/* Writes what the agent loaded into st. MESHCA_ENOMEM leaves st half-filled, for the caller's
 * dataplane_status_clear. */
static int fill_status(dataplane_status *st, const identity *id, int64_t now, model_tag *tags,
                       size_t ntags)
{
    char when[32];
    bool oom = false;

    set_field(&st->issued_backend, id->backend, &oom);
    for (size_t i = 0; i < st->nsupported; i++)
        free(st->supported_backends[i]);
    free(st->supported_backends);
    st->nsupported = 0;
    st->supported_backends = calloc(id->nbundle_backends + 1, sizeof(char *));
    if (!st->supported_backends)
        return MESHCA_ENOMEM;
    for (size_t i = 0; i < id->nbundle_backends && !oom; i++) {
        st->supported_backends[i] = dup_or_flag(id->bundle_backends[i], &oom);
        st->nsupported = i + 1;
    }
    set_field(&st->certificate_serial, id->serial, &oom);
    pki_format_time(id->not_after, when, sizeof(when));
    set_field(&st->certificate_expiration_time, when, &oom);
    set_field(&st->last_certificate_regeneration, id->last_regeneration, &oom);
    st->certificate_regenerations = id->regenerations;
    st->generation = id->generation;
    st->acknowledged_generation = id->generation;
    pki_format_time(now, when, sizeof(when));
    set_field(&st->last_seen, when, &oom);
    if (tags && !oom) {
        for (size_t i = 0; i < st->ntags; i++) {
            free(st->tags[i].key);
            free(st->tags[i].value);
        }
        free(st->tags);
        st->ntags = 0;
        st->tags = calloc(ntags + 1, sizeof(*st->tags));
        if (!st->tags)
            return MESHCA_ENOMEM;
        for (size_t i = 0; i < ntags && !oom; i++) {
            st->tags[i].key = dup_or_flag(tags[i].key, &oom);
            st->tags[i].value = dup_or_flag(tags[i].value, &oom);
            st->ntags = i + 1;
        }
    }
    return oom ? MESHCA_ENOMEM : 0;
}

/* Records what was loaded, retrying the compare-and-swap. */
static int acknowledge(store *s, const char *mesh_name, const char *dp, const identity *id,
                       int64_t now, char *errbuf)
{
    model_tag *tags = NULL;
    size_t ntags = 0;
    int rc = load_tags(s, mesh_name, dp, &tags, &ntags);
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cannot record the status of '%s/%s': %s", mesh_name, dp,
                           meshca_strerror(rc));

    rc = STORE_ECONFLICT;
    for (int attempt = 0; attempt < ACK_STATUS_RETRIES && rc == STORE_ECONFLICT; attempt++) {
        dataplane_status st;
        uint64_t version = 0;
        memset(&st, 0, sizeof(st));
        rc = state_get_status(s, mesh_name, dp, &st, &version);
        if (rc == STORE_ENOTFOUND) {
            bool oom = false;
            memset(&st, 0, sizeof(st));
            st.mesh = dup_or_flag(mesh_name, &oom);
            st.name = dup_or_flag(dp, &oom);
            version = 0;
            rc = oom ? MESHCA_ENOMEM : 0;
        }
        if (rc == 0)
            rc = fill_status(&st, id, now, tags, ntags);
        if (rc == 0)
            rc = state_put_status(s, &st, version);
        dataplane_status_clear(&st);
    }
    free_tags(tags, ntags);
    if (rc == MESHCA_ENOMEM)
        return meshca_fail(errbuf, rc, "cannot record the status of '%s/%s': %s", mesh_name, dp,
                           meshca_strerror(rc));
    if (rc < 0)
        return meshca_fail(errbuf, MESHCA_EIO, "cannot record the status of '%s/%s': %s",
                           mesh_name, dp, store_strerror(rc));
    return 0;
}

int ack_record(store *s, const char *mesh_name, const char *dp, uint64_t generation, int64_t now,
               char *errbuf)
{
    identity id = {0};
    int rc = identity_read(s, mesh_name, dp, &id, NULL, errbuf);
    if (rc == STORE_ENOTFOUND)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "no certificate issued to dataplane '%s/%s'",
                           mesh_name, dp);
    if (rc < 0)
        return rc;
    /* Only the current generation can be recorded: the identity holds no history, and what
     * S4's gating counts must be what that generation carried. */
    if (id.generation <= 0 || (uint64_t)id.generation != generation) {
        long long cur = id.generation;
        identity_clear(&id);
        return meshca_fail(errbuf, MESHCA_ECONFLICT, "generation %llu is not the current one (%lld)",
                           (unsigned long long)generation, cur);
    }
    rc = acknowledge(s, mesh_name, dp, &id, now, errbuf);
    identity_clear(&id);
    return rc;
}
