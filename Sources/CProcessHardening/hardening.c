#include "CProcessHardening.h"

#if defined(__linux__)
#include <sys/prctl.h>

int cprocess_make_nondumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int cprocess_dumpable(void) {
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}
#else
#include <sys/resource.h>

int cprocess_make_nondumpable(void) {
    struct rlimit none = {0, 0};
    return setrlimit(RLIMIT_CORE, &none);
}

int cprocess_dumpable(void) {
    return -1;
}
#endif
