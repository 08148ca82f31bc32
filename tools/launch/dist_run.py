"""torchrun for tools/dist_train.sh and tools/dist_test.sh, without torchrun's traceback when a process fails.

    python tools/launch/dist_run.py [torchrun options] SCRIPT [script options]   # = python -m torch.distributed.run

Each process reports its own failure (bad input: one ``error: ...`` line from run_cli, exit 2); torchrun
would add a ChildFailedError traceback and exit 1. This launcher exits with the first failed process's
code instead (a process killed by signal N: 128 + N, as a shell does), and a launch that cannot start
(a port in use, a bad NNODES) is one ``error:`` line, exit 2. It imports only torch: it stays light.
"""
import logging
import sys


def main(argv=None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    # its "failed (exitcode: N) local_rank: ..." line repeats what the failed process printed
    logging.getLogger('torch.distributed.elastic.multiprocessing.api').setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
        if code != 2:  # (2: the process printed its error line)
            print(f'dist_run.py: process {rank} exited with {code}; the others were stopped', file=sys.stderr)
        return code
    except SignalException as e:  # this launcher was signalled; it passed the signal on to the processes
        return 128 + int(e.sigval)
    except Exception as e:  # noqa: BLE001 -- the launch itself failed: environment, network
        lines = [s.strip() for s in str(e).splitlines() if s.strip()]
        print(f'error: torchrun cannot start the processes: {type(e).__name__}: {lines[0] if lines else ""} '
              '(the launch settings: GPUS, NNODES, NODE_RANK, MASTER_ADDR, PORT)', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
