/* fuzz-csr.c - libFuzzer target for the dataplane API's CSR check (SPEC S12): any byte string must
 * be refused with a message or accepted, never crash, leak or reach undefined behaviour. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "reconciler/api/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errbuf[MESHCA_ERRBUF];
    for (int type = CSR_KEY_EC_P256; type <= CSR_KEY_RSA_2048; type++) {
        unsigned char *spki = NULL;
        size_t len = 0;
        if (csr_check((const char *)data, size, (csr_key_type)type, &spki, &len, errbuf) == 0)
            free(spki);
    }
    return 0;
}
