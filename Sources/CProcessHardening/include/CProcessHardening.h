#ifndef CPROCESS_HARDENING_H
#define CPROCESS_HARDENING_H

/// Marks the calling process non-dumpable (Linux `prctl(PR_SET_DUMPABLE, 0)`): no core file is
/// written when it crashes, and other processes of the same user can neither ptrace it nor read
/// its memory or `/proc/<pid>/environ`, where the Postman API keys live. `prctl` is variadic, which
/// Swift cannot call, hence this shim.
///
/// Returns 0 on success, else -1 with `errno` set. Elsewhere than Linux it only sets the core-file
/// size limit to 0.
int cprocess_make_nondumpable(void);

/// The dumpable flag as `prctl(PR_GET_DUMPABLE)` reports it (1 dumpable, 0 not, -1 on error or
/// where there is no such flag).
int cprocess_dumpable(void);

#endif
