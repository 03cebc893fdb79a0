"""`kubectl trainyard` (the console script `kubectl-trainyard`): the commands and their flags.

kubectl runs any `kubectl-<name>` on the PATH as `kubectl <name>`, passing every argument
after the name; kubectl's own -n, -A, --kubeconfig and --context are therefore taken here,
before or after the command, with kubectl's meaning. Exit status: 0 done, 1 an error (its
message on stderr says what to do) or, for `watch`, a job that Failed; 130 on ^C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console

from trainyard_cli import jobs, logs, views, watch
from trainyard_cli.kube import CliError, Target, connect

#: Width of tables written to a pipe (a terminal's own width is used otherwise).
PIPE_WIDTH = 200


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """kubectl's connection flags; on the subcommands they default to 'not given', so a flag
    before the command is not overwritten by the subcommand's default."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-n", "--namespace", default=default, help="the namespace (default: the context's)"
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="every namespace (list only)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl trainyard",
        description="Look into and steer Trainyard TrainingJobs (docs/cli.md).",
    )
    _common(top, suppress=False)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *, job: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if job:
            cmd.add_argument("job", metavar="JOB", help="the TrainingJob's name")
        _common(cmd, suppress=True)
        return cmd

    command("list", "jobs with phase, workers, stage, progress, ETA and loss", job=False)
    follow = command("watch", "the job's live view until it Succeeds or Fails, then its results")
    follow.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )
    log = command("logs", "every worker's log, merged in time order, each line by its pod")
    log.add_argument("-f", "--follow", action="store_true", help="keep streaming until the end")
    log.add_argument("--tail", type=int, default=None, help="only the last N lines of each pod")
    log.add_argument("--timestamps", action="store_true", help="show each line's arrival time")
    command("results", "the per-stage results table (status.results)")
    command("suspend", "delete the workers and keep the job (spec.suspend: true)")
    command("resume", "start a suspended job's workers again, from its checkpoint")
    command("restart", "restart the whole gang once (spec.restartRequest), from its checkpoint")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # emoji off: a log line's ":x:" is text, not a picture
    out = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
    err = Console(stderr=True, highlight=False, emoji=False)
    try:
        if args.all_namespaces and args.command != "list":
            raise CliError(
                f"-A/--all-namespaces lists jobs everywhere; `{args.command}` acts on one job "
                "in one namespace (-n NAMESPACE)"
            )
        target = connect(
            args.kubeconfig, args.context, args.namespace, all_namespaces=args.all_namespaces
        )
        return run(args, target, out, err)
    except CliError as error:
        err.print(f"error: {error}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace, target: Target, out: Console, err: Console) -> int:
    if args.command == "list":
        found = jobs.list_jobs(target)
        if not found:
            where = "any namespace" if target.all_namespaces else f'namespace "{target.namespace}"'
            err.print(f"No TrainingJobs found in {where}.", markup=False)
            return 0
        table = views.jobs_table(found, now=datetime.now(UTC), namespaces=target.all_namespaces)
        out.print(table)
        return 0
    name = args.job
    if args.command == "watch":
        jobs.get_job(target, name)  # a wrong name fails at once, not after a timeout

        def fetch() -> dict[str, object] | None:
            return jobs.find_job(target, name)

        try:
            job = watch.follow(fetch, out, timeout=args.timeout)
        except watch.JobGoneError:
            raise CliError(f"TrainingJob {name} was deleted while it was watched") from None
        except TimeoutError as error:
            raise CliError(f"TrainingJob {name}: {error} (--timeout)") from None
        if (job.get("status") or {}).get("results"):
            out.print(views.results_view(job))
        return 0 if jobs.phase_of(job) == "Succeeded" else 1
    if args.command == "logs":
        job = jobs.get_job(target, name)
        if args.follow:
            follower = logs.Follower(target, name, tail=args.tail)
            follower.run(
                lambda line: out.print(line, markup=False, soft_wrap=True),
                timestamps=args.timestamps,
            )
            return 0
        lines = logs.read_merged(target, job, tail=args.tail)
        if not lines:
            err.print(
                f"TrainingJob {name} has no worker logs yet (phase {jobs.phase_of(job)}); "
                f"`kubectl trainyard logs -f {name}` waits for them",
                markup=False,
            )
        for line in lines:
            out.print(
                logs.format_line(line, timestamps=args.timestamps), markup=False, soft_wrap=True
            )
        return 0
    if args.command == "results":
        job = jobs.get_job(target, name)
        if not (job.get("status") or {}).get("results"):
            reason = views.why(job)
            raise CliError(
                f"TrainingJob {name} has no results yet: it is {jobs.phase_of(job)}"
                + (f" ({reason})" if reason else "")
                + "; results appear when it Succeeds (`kubectl trainyard watch "
                + f"{name}` follows it)"
            )
        out.print(views.results_view(job))
        return 0
    if args.command in ("suspend", "resume"):
        out.print(jobs.set_suspended(target, name, args.command == "suspend"), markup=False)
        return 0
    if args.command == "restart":
        out.print(jobs.request_restart(target, name, datetime.now(UTC)), markup=False)
        return 0
    raise CliError(f"unknown command {args.command}")
