#!/usr/bin/env python3
"""Rebuild the critical chain of each sequential write from scheduler events.

Reads `perf script -F comm,tid,cpu,time,event,trace` of `sched:sched_waking` and
`sched:sched_switch` on stdin (`sched_waking`, not `sched_wakeup`: a wake-up of a thread on an
idle CPU is finished on that CPU, in its idle task's name, while `sched_waking` is always
recorded in the waker's); argument 1 is a file listing the load generator's thread ids.
Every wake-up of a load-generator thread by a thread outside it ends one write; walking back
from it (who woke the waker, and so on) gives the hops of that write until a load-generator
thread sent it. A
thread that had blocked in uninterruptible sleep (state D: waiting for the disk) was woken by
the I/O's completion, whoever's name the interrupt ran in: the chain continues from that
thread's earlier wake-up, and the hop is labelled `io`. Chains are grouped by
shape (the sequence of thread names) and the three commonest shapes are printed with, per hop,
the median time from the waker starting to run until it woke the next thread
(`run->wake`) and from that wake-up until the woken thread ran (`wake->run`), in microseconds.
Used by bench/sequential_hops.sh (docs/ARCHITECTURE.md, "Sequential put on a second host").
"""
import bisect
import collections
import re
import statistics
import sys

HOPS_MAX = 30
EVENT = re.compile(r'^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$')


def main():
    client_tids = {int(tid) for tid in open(sys.argv[1]).read().split()}
    wakes = collections.defaultdict(list)  # tid -> [(time us, waker tid)]
    runs = collections.defaultdict(list)  # tid -> [switch-in time us]
    blocks = collections.defaultdict(list)  # tid -> [(switch-out time us, state)]
    names = {}
    for line in sys.stdin:
        match = EVENT.match(line)
        if not match:
            continue
        comm, tid, _cpu, at, event, rest = match.groups()
        tid, at = int(tid), float(at) * 1e6
        names.setdefault(tid, comm)
        if event == 'sched_waking':
            woken = re.search(r'comm=(.+?) pid=(\d+)', rest)
            names.setdefault(int(woken.group(2)), woken.group(1))
            wakes[int(woken.group(2))].append((at, tid))
        elif event == 'sched_switch':
            nxt = re.search(r'next_comm=(.+?) next_pid=(\d+)', rest)
            names.setdefault(int(nxt.group(2)), nxt.group(1))
            runs[int(nxt.group(2))].append(at)
            prev = re.search(r'prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+)', rest)
            if prev:
                blocks[int(prev.group(1))].append((at, prev.group(2)))
    wake_times = {tid: [at for at, _ in events] for tid, events in wakes.items()}

    def first_run(tid, at):
        times = runs.get(tid, [])
        index = bisect.bisect_left(times, at)
        return times[index] if index < len(times) else None

    def waited_for_disk(tid, at):
        index = bisect.bisect_left(blocks.get(tid, []), (at, '')) - 1
        return index >= 0 and blocks[tid][index][1].startswith('D')

    def previous_wake(tid, before):
        index = bisect.bisect_right(wake_times.get(tid, []), before) - 1
        return wakes[tid][index] if index >= 0 else None

    chains = []
    for client in client_tids:
        # A write's answer reaches the load generator from a server thread; hand-offs between
        # the load generator's own threads are not writes.
        answers = [(at, waker) for at, waker in wakes.get(client, []) if waker not in client_tids]
        for at, waker in answers:
            chain, woken, done = [], client, False
            for _ in range(HOPS_MAX):
                if waker in client_tids:
                    chain.append((waker, woken, at, first_run(woken, at)))
                    done = True
                    break
                if waited_for_disk(woken, at) or waker not in wake_times:
                    chain.append(('io', woken, at, first_run(woken, at)))
                    earlier = previous_wake(woken, at - 1)
                else:
                    chain.append((waker, woken, at, first_run(woken, at)))
                    woken = waker
                    earlier = previous_wake(waker, at)
                if earlier is None:
                    break
                at, waker = earlier
            if done:
                chains.append(list(reversed(chain)))

    def shape(chain):
        return tuple(('io' if waker == 'io' else names.get(waker, '?'), names.get(woken, '?'))
                     for waker, woken, _, _ in chain)

    shapes = collections.Counter(shape(chain) for chain in chains)
    print(f'{len(chains)} chains, {len(shapes)} shapes')
    for hops, count in shapes.most_common(3):
        chosen = [chain for chain in chains if shape(chain) == hops]
        print(f'\n{count} chains of this shape (median us):')
        for position, (waker, woken) in enumerate(hops):
            run_to_wake, wake_to_run = [], []
            for chain in chosen:
                _, _, at, ran = chain[position]
                if position > 0 and chain[position - 1][3] is not None:
                    run_to_wake.append(at - chain[position - 1][3])
                if ran is not None:
                    wake_to_run.append(ran - at)
            median = lambda values: f'{statistics.median(values):6.0f}' if values else '     -'
            print(f'{position:2d} {waker:>16} -> {woken:<16} run->wake {median(run_to_wake)}'
                  f'  wake->run {median(wake_to_run)}')
        spans = [chain[-1][2] - chain[0][2] for chain in chosen]
        print('first wake-up to the answer waking the load generator: '
              f'{statistics.median(spans):.0f}')


if __name__ == '__main__':
    main()
