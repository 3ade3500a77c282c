#!/usr/bin/env python3
"""Where a profiled run's CPU goes, by category: reads `perf script` output (samples with call graphs,
from `PROFILE=perf bash bench/many-campaigns.sh`) and files each sample under the first category whose
pattern appears anywhere in its stack (the order below decides for stacks that hold several). The job's own
code comes before the HTTP client: with NIO's event loops as Swift concurrency's executor, every stack of the
job runs under NIOPosix frames.

Usage: perf script -i out/bench-many/100x60/perf.data | python3 bench/perf-categories.py [REQUESTS [CPU_SECONDS]]
With the number of requests and the job's user+sys seconds, prints microseconds per request too."""
import re, sys

CATEGORIES = [
    ("timers: Task.sleep and dispatch's timer thread", r"_sleep5until|_dispatch_mgr|timerfd|_dispatch_timer|_dispatch_source|dispatch_after|swift_dispatchEnqueueWithDeadline|onSleepWake"),
    ("journal: libpq and the LibPQ wrapper", r"libpq\.so|5LibPQ|PGConnection|PGQuery|RunStore"),
    ("JSON: parsing Postman's answers", r"JSONParser|JSONSerialization|JSONDecoder|JSONEncoder|PostmanAPI6Decode|FastDecode|NSNumber|__NSDictionary|_NSCF"),
    ("dates: Foundation Date and ISO 8601", r"ISO8601|DateFormatter|Calendar|TimeZone|ICU|libicu|10FoundationE4Date|Date\b"),
    ("logging", r"\$s7Logging|LogHandler"),
    ("message lifecycles (RetryCore)", r"9RetryCore"),
    ("campaign worker: loop, scans, queues", r"14CampaignWorker"),
    ("selection, start-up and the rest of RetryJob", r"8RetryJob"),
    ("HTTP client: AsyncHTTPClient, NIO, sockets", r"AsyncHTTPClient|NIOPosix|NIOCore|NIOHTTP1|NIOSSL|epoll|sendmsg|recvmsg|tcp_|__sys_sendto|__sys_recvfrom|sock_"),
    ("Swift concurrency runtime: actor hops, task switches", r"swift_task|swift_job_run|swift_continuation|_dispatch_|libswift_Concurrency"),
]
patterns = [(name, re.compile(p)) for name, p in CATEGORIES]
counts = {name: 0 for name, _ in CATEGORIES}
counts["other"] = 0
total = 0
stack = []
comm_ok = True

def flush():
    global total, stack
    if not stack:
        return
    total += 1
    text = "\n".join(stack)
    for name, rx in patterns:
        if rx.search(text):
            counts[name] += 1
            break
    else:
        counts["other"] += 1
    stack = []

for line in sys.stdin:
    if not line.strip():
        flush()
        continue
    if line[0] not in " \t":
        flush()
        stack = [line.strip()]
        continue
    stack.append(line.strip())
flush()
requests = float(sys.argv[1]) if len(sys.argv) > 1 else None
cpu = float(sys.argv[2]) if len(sys.argv) > 2 else None
print(f"{total} samples")
for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
    share = n / max(1, total)
    extra = f"  {1e6 * cpu * share / requests:6.0f} us/request" if requests and cpu else ""
    print(f"  {100 * share:5.1f}%  {name}{extra}")
