"""idle_uss: private memory (USS) of an idle multiprocessing child.

Usage: python3 idle_uss.py {fork,spawn,forkserver} ITERS
As idle_rss.py, with Private_Clean + Private_Dirty from
/proc/PID/smaps_rollup: the pages no other process shares. Prints the
median in MiB.
"""

import bench_common
import idle_rss

if __name__ == "__main__":
    idle_rss.main(bench_common.uss_mib)
