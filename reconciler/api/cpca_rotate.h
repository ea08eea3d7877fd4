/* cpca_rotate.h - rotating the control-plane CA in three steps (rotate, switch, finish) in its one store object. */
#ifndef MESHCA_API_CPCA_ROTATE_H
#define MESHCA_API_CPCA_ROTATE_H

#include <stddef.h>
#include <stdint.h>

#include "reconciler/api/cpca.h"
#include "reconciler/store.h"

/*
 * The rotation lives in the control-plane CA's own object (CPCA_KIND/CPCA_MESH/CPCA_NAME), so
 * every step is one compare-and-swap and a reader that knows only {"cert","key","createdAt"}
 * (cpca_load, an older meshca) always reads the CA that signs the served certificate:
 *
 *   none      {"cert","key","createdAt"}
 *   started   + "next": {"cert","key","createdAt"}        (cp-ca rotate)
 *   switched  {"cert","key","createdAt"} = the former next,
 *             + "previous": {"cert","createdAt"}, "switchedAt"  (cp-ca rotate --switch)
 *   none      "previous" and "switchedAt" dropped          (cp-ca rotate --finish)
 *
 * The previous CA's key is dropped at the switch: nothing is signed with it any more, and a
 * rotation after a leak must not keep the leaked key. Agents trust the bundle of every
 * certificate the object holds (cpca_rotation_certs), so an agent given the bundle in step
 * "started" verifies the controller before and after the switch.
 */

typedef enum cpca_phase {
    CPCA_PHASE_NONE,
    CPCA_PHASE_STARTED,  /* a next CA is stored; controllers still serve from the current one */
    CPCA_PHASE_SWITCHED, /* the next CA is current; the previous certificate is still printed */
} cpca_phase;

typedef enum cpca_step {
    CPCA_STEP_ROTATE, /* none -> started: a new CA stored as next */
    CPCA_STEP_SWITCH, /* started -> switched */
    CPCA_STEP_FINISH, /* switched -> none */
} cpca_step;

/* The certificates of the object, never a key. Strings owned; cpca_rotation_free() frees. */
typedef struct cpca_rotation {
    cpca_phase phase;
    char *current_cert;
    char *current_created; /* createdAt, "" when the object has none */
    char *next_cert;       /* started only, else NULL */
    char *next_created;
    char *previous_cert; /* switched only, else NULL */
    char *previous_created;
    char *switched_at; /* switched only, else NULL */
} cpca_rotation;

#define CPCA_ROTATION_MAX_CERTS 2

/* "none", "started" or "switched". */
const char *cpca_phase_name(cpca_phase phase);

/* Decodes a stored object (keys are not copied; the parsed copies are wiped). MESHCA_ECORRUPT
 * when it is not one of the shapes above. */
int cpca_rotation_decode(const char *value, size_t len, cpca_rotation *ret, char *errbuf);

/* Reads and decodes the object of s; MESHCA_ENOTFOUND when the store has no control-plane CA. */
int cpca_rotation_read(store *s, cpca_rotation *ret, char *errbuf);

void cpca_rotation_free(cpca_rotation *r);

/*
 * The certificates agents must trust, oldest first (the same two, in the same order, from
 * "started" to "switched", so a bundle distributed after `rotate` needs no change at the
 * switch): certs[i] and roles[i] ("previous", "current", "next") are borrowed from r.
 * Returns how many (1 or 2).
 */
size_t cpca_rotation_certs(const cpca_rotation *r, const char *certs[CPCA_ROTATION_MAX_CERTS],
                           const char *roles[CPCA_ROTATION_MAX_CERTS]);

/*
 * One step on a stored object, without I/O: *ret_value is the object to store (it holds keys:
 * free with pki_free_secret()). next_ca: the new CA for CPCA_STEP_ROTATE (ignored otherwise).
 * A step the phase does not allow is MESHCA_ESTATE with a message saying which step comes next.
 */
int cpca_rotation_apply(const char *value, size_t len, cpca_step step, const cpca *next_ca,
                        int64_t now, char **ret_value, char *errbuf);

/*
 * The step on the store: read, apply, compare-and-swap, again on a conflict (bounded), so of
 * two concurrent `rotate`s one stores its CA and the other is refused (MESHCA_ESTATE). For
 * CPCA_STEP_ROTATE a new CA is generated (CN "meshca control plane CA <RFC 3339 now>", so the
 * issuer of a served certificate tells which CA signed it). MESHCA_ESTATE too when the store
 * has no control-plane CA yet. *ret_after (may be NULL): the object as stored by this step.
 */
int cpca_rotate(store *s, cpca_step step, int64_t now, cpca_rotation *ret_after, char *errbuf);

#endif
