/* cpca_rotate.c - rotating the control-plane CA in three steps (rotate, switch, finish) in its one store object. */
#include "reconciler/api/cpca_rotate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "reconciler/pki.h"

/* Bounded: each retry follows another writer's successful step, and three steps end a rotation. */
#define ROTATE_ATTEMPTS 5

const char *cpca_phase_name(cpca_phase phase)
{
    return phase == CPCA_PHASE_STARTED    ? "started"
           : phase == CPCA_PHASE_SWITCHED ? "switched"
                                          : "none";
}

/* Wipes the string member name of obj in place (a key about to be freed with its document). */
static void wipe_member(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    const char *text = json_string_value(v);
    if (text)
        OPENSSL_cleanse((char *)text, json_string_length(v));
}

/* Wipes every key the document holds, then frees it. */
static void free_doc(json_t *doc)
{
    if (!doc)
        return;
    wipe_member(doc, "key");
    wipe_member(json_object_get(doc, "next"), "key");
    wipe_member(json_object_get(doc, "previous"), "key");
    json_decref(doc);
}

static const char *str(json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

/* The phase of a parsed object; -1 when it is not one of the shapes cpca_rotate.h lists. */
static int phase_of(json_t *doc)
{
    if (!json_is_object(doc) || !str(doc, "cert") || !str(doc, "key"))
        return -1;
    json_t *next = json_object_get(doc, "next");
    json_t *previous = json_object_get(doc, "previous");
    if (next && previous)
        return -1;
    if (next)
        return str(next, "cert") && str(next, "key") ? CPCA_PHASE_STARTED : -1;
    if (previous)
        return str(previous, "cert") ? CPCA_PHASE_SWITCHED : -1;
    return CPCA_PHASE_NONE;
}

static int parse(const char *value, size_t len, json_t **ret_doc, cpca_phase *ret_phase,
                 char *errbuf)
{
    json_t *doc = json_loadb(value, len, 0, NULL);
    int phase = phase_of(doc);
    if (phase < 0) {
        free_doc(doc);
        return meshca_fail(
            errbuf, MESHCA_ECORRUPT,
            "cp-ca: the stored control-plane CA (%s/%s/%s) is not {\"cert\",\"key\"} "
            "with at most one of \"next\" {\"cert\",\"key\"} or \"previous\" {\"cert\"}",
            CPCA_KIND, CPCA_MESH, CPCA_NAME);
    }
    *ret_doc = doc;
    *ret_phase = (cpca_phase)phase;
    return 0;
}

void cpca_rotation_free(cpca_rotation *r)
{
    if (!r)
        return;
    free(r->current_cert);
    free(r->current_created);
    free(r->next_cert);
    free(r->next_created);
    free(r->previous_cert);
    free(r->previous_created);
    free(r->switched_at);
    memset(r, 0, sizeof(*r));
}

/* strdup of s, or of "" when s is NULL (an optional field); *failed set when out of memory. */
static char *dup_text(const char *s, int *failed)
{
    char *d = strdup(s ? s : "");
    if (!d)
        *failed = 1;
    return d;
}

int cpca_rotation_decode(const char *value, size_t len, cpca_rotation *ret, char *errbuf)
{
    json_t *doc = NULL;
    cpca_phase phase;
    int rc = parse(value, len, &doc, &phase, errbuf);
    if (rc < 0)
        return rc;
    cpca_rotation r = {phase, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int failed = 0;
    json_t *next = json_object_get(doc, "next"), *previous = json_object_get(doc, "previous");
    r.current_cert = dup_text(str(doc, "cert"), &failed);
    r.current_created = dup_text(str(doc, "createdAt"), &failed);
    if (phase == CPCA_PHASE_STARTED) {
        r.next_cert = dup_text(str(next, "cert"), &failed);
        r.next_created = dup_text(str(next, "createdAt"), &failed);
    } else if (phase == CPCA_PHASE_SWITCHED) {
        r.previous_cert = dup_text(str(previous, "cert"), &failed);
        r.previous_created = dup_text(str(previous, "createdAt"), &failed);
        r.switched_at = dup_text(str(doc, "switchedAt"), &failed);
    }
    free_doc(doc);
    if (failed) {
        cpca_rotation_free(&r);
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cp-ca: out of memory");
    }
    *ret = r;
    return 0;
}

int cpca_rotation_read(store *s, cpca_rotation *ret, char *errbuf)
{
    if (!s || !ret)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing argument");
    const store_key k = {CPCA_KIND, CPCA_MESH, CPCA_NAME};
    char *value = NULL;
    size_t len = 0;
    int rc = store_get(s, &k, &value, &len, NULL);
    if (rc == STORE_ENOTFOUND)
        return meshca_fail(errbuf, MESHCA_ENOTFOUND, "cp-ca: no control-plane CA yet");
    if (rc < 0)
        return meshca_fail(errbuf, rc, "cp-ca: cannot read the control-plane CA: %s",
                           store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
    rc = cpca_rotation_decode(value, len, ret, errbuf);
    pki_free_secret(value);
    return rc;
}

size_t cpca_rotation_certs(const cpca_rotation *r, const char *certs[CPCA_ROTATION_MAX_CERTS],
                           const char *roles[CPCA_ROTATION_MAX_CERTS])
{
    size_t n = 0;
    if (r->phase == CPCA_PHASE_SWITCHED) {
        certs[n] = r->previous_cert;
        roles[n++] = "previous";
    }
    certs[n] = r->current_cert;
    roles[n++] = "current";
    if (r->phase == CPCA_PHASE_STARTED) {
        certs[n] = r->next_cert;
        roles[n++] = "next";
    }
    return n;
}

/* MESHCA_ESTATE naming the step that comes next when phase does not allow step; else 0. */
static int refuse(json_t *doc, cpca_phase phase, cpca_step step, char *errbuf)
{
    const char *next_created = str(json_object_get(doc, "next"), "createdAt");
    const char *switched_at = str(doc, "switchedAt");
    if (step == CPCA_STEP_ROTATE && phase == CPCA_PHASE_STARTED)
        return meshca_fail(
            errbuf, MESHCA_ESTATE,
            "a control-plane CA rotation is already in progress (next CA created %s): "
            "give every agent the bundle of 'meshca cp-ca -o pem' as --ca-file, then "
            "run 'meshca cp-ca rotate --switch'",
            next_created ? next_created : "earlier");
    if (step == CPCA_STEP_ROTATE && phase == CPCA_PHASE_SWITCHED)
        return meshca_fail(errbuf, MESHCA_ESTATE,
                           "a control-plane CA rotation is already in progress (switched at %s): "
                           "run 'meshca cp-ca rotate --finish' first",
                           switched_at ? switched_at : "earlier");
    if (step == CPCA_STEP_SWITCH && phase == CPCA_PHASE_NONE)
        return meshca_fail(errbuf, MESHCA_ESTATE,
                           "no control-plane CA rotation in progress: no next CA to switch to; "
                           "start one with 'meshca cp-ca rotate'");
    if (step == CPCA_STEP_SWITCH && phase == CPCA_PHASE_SWITCHED)
        return meshca_fail(errbuf, MESHCA_ESTATE,
                           "the control-plane CA rotation is already switched (at %s): the next "
                           "step is 'meshca cp-ca rotate --finish'",
                           switched_at ? switched_at : "earlier");
    if (step == CPCA_STEP_FINISH && phase == CPCA_PHASE_NONE)
        return meshca_fail(errbuf, MESHCA_ESTATE,
                           "no control-plane CA rotation in progress: nothing to finish; start "
                           "one with 'meshca cp-ca rotate'");
    if (step == CPCA_STEP_FINISH && phase == CPCA_PHASE_STARTED)
        return meshca_fail(errbuf, MESHCA_ESTATE,
                           "the control-plane CA rotation is not switched yet: run 'meshca cp-ca "
                           "rotate --switch' first (once every agent's --ca-file holds the "
                           "bundle of 'meshca cp-ca -o pem')");
    return 0;
}

/* Sets member name of obj to a new string; 0 when out of memory. */
static int set_text(json_t *obj, const char *name, const char *text)
{
    return json_object_set_new(obj, name, json_string(text)) == 0;
}

int cpca_rotation_apply(const char *value, size_t len, cpca_step step, const cpca *next_ca,
                        int64_t now, char **ret_value, char *errbuf)
{
    if (!value || !ret_value ||
        (step == CPCA_STEP_ROTATE && (!next_ca || !next_ca->cert_pem || !next_ca->key_pem)))
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing argument");
    json_t *doc = NULL;
    cpca_phase phase;
    int rc = parse(value, len, &doc, &phase, errbuf);
    if (rc < 0)
        return rc;
    if ((rc = refuse(doc, phase, step, errbuf)) < 0) {
        free_doc(doc);
        return rc;
    }
    char when[32] = "";
    pki_format_time(now, when, sizeof(when));
    int ok = 1;
    if (step == CPCA_STEP_ROTATE) {
        json_t *next = json_object();
        ok = next && set_text(next, "cert", next_ca->cert_pem) &&
             set_text(next, "key", next_ca->key_pem) && set_text(next, "createdAt", when) &&
             json_object_set(doc, "next", next) == 0;
        if (!ok && next)
            wipe_member(next, "key"); /* doc did not take it; when it did, free_doc wipes it */
        json_decref(next);
    } else if (step == CPCA_STEP_SWITCH) {
        json_t *next = json_incref(json_object_get(doc, "next"));
        json_t *previous = json_object();
        const char *created = str(doc, "createdAt"), *next_created = str(next, "createdAt");
        ok = previous && set_text(previous, "cert", str(doc, "cert")) &&
             (!created || set_text(previous, "createdAt", created)) &&
             json_object_set(doc, "previous", previous) == 0;
        json_decref(previous);
        /* The old key goes: nothing is signed with it any more (and it may be the leaked one). */
        wipe_member(doc, "key");
        ok = ok && set_text(doc, "cert", str(next, "cert")) &&
             set_text(doc, "key", str(next, "key")) && set_text(doc, "switchedAt", when);
        if (ok && next_created)
            ok = set_text(doc, "createdAt", next_created);
        else if (ok)
            json_object_del(doc, "createdAt");
        if (ok)
            json_object_del(doc, "next");
        /* doc holds a copy of the key now (or is dropped): this reference is the last one. */
        wipe_member(next, "key");
        json_decref(next);
    } else {
        json_object_del(doc, "previous");
        json_object_del(doc, "switchedAt");
    }
    char *out = ok ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    free_doc(doc);
    if (!out)
        return meshca_fail(errbuf, MESHCA_ENOMEM, "cp-ca: out of memory");
    *ret_value = out;
    return 0;
}

/* The CN of a rotation's new CA: the time tells it from the one it replaces. */
static void next_cn(int64_t now, char *buf, size_t size)
{
    char when[32] = "";
    pki_format_time(now, when, sizeof(when));
    snprintf(buf, size, "%s %s", CPCA_CN, when);
}

int cpca_rotate(store *s, cpca_step step, int64_t now, cpca_rotation *ret_after, char *errbuf)
{
    if (!s)
        return meshca_fail(errbuf, MESHCA_EINVAL, "cp-ca: missing argument");
    const store_key k = {CPCA_KIND, CPCA_MESH, CPCA_NAME};
    cpca next = {NULL, NULL};
    int rc = 0;
    for (int attempt = 0; attempt < ROTATE_ATTEMPTS; attempt++) {
        char *value = NULL, *updated = NULL;
        size_t len = 0;
        uint64_t version = 0;
        rc = store_get(s, &k, &value, &len, &version);
        if (rc == STORE_ENOTFOUND) {
            rc = meshca_fail(errbuf, MESHCA_ESTATE,
                             "this store has no control-plane CA yet: nothing to rotate ('meshca "
                             "run --listen' or 'meshca cp-ca' creates one)");
            goto out;
        }
        if (rc < 0) {
            rc = meshca_fail(errbuf, rc, "cp-ca: cannot read the control-plane CA: %s",
                             store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
            goto out;
        }
        /* The new CA is made only once the step is known to be allowed, and once. */
        json_t *doc = NULL;
        cpca_phase phase;
        rc = parse(value, len, &doc, &phase, errbuf);
        if (rc == 0)
            rc = refuse(doc, phase, step, errbuf);
        free_doc(doc);
        if (rc == 0 && step == CPCA_STEP_ROTATE && !next.cert_pem) {
            char cn[96];
            next_cn(now, cn, sizeof(cn));
            rc = cpca_generate(cn, now, &next, errbuf);
        }
        if (rc == 0)
            rc = cpca_rotation_apply(value, len, step, &next, now, &updated, errbuf);
        pki_free_secret(value);
        if (rc < 0)
            goto out;
        rc = store_put(s, &k, updated, strlen(updated), version, NULL);
        if (rc == STORE_ECONFLICT) {
            pki_free_secret(updated);
            continue; /* another writer stepped first: decide again on what it left */
        }
        if (rc < 0)
            rc = meshca_fail(errbuf, rc, "cp-ca: cannot store the control-plane CA: %s",
                             store_errmsg(s)[0] ? store_errmsg(s) : store_strerror(rc));
        else if (ret_after)
            rc = cpca_rotation_decode(updated, strlen(updated), ret_after, errbuf);
        pki_free_secret(updated);
        goto out;
    }
    rc = meshca_fail(errbuf, MESHCA_ECONFLICT,
                     "cp-ca: the control-plane CA kept changing while this step ran; run it again");
out:
    cpca_free(&next);
    return rc;
}
