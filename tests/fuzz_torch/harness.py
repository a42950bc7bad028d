"""harness: the command line, seed loop, report and exit status that fuzz_ops.py and
fuzz_autograd.py share.

A family is a function run(seed, log, stats) that builds one random program from the seed,
runs it on libautograd and on PyTorch side by side, appends what it does to `log` and raises
Mismatch at the first difference; `stats` counts what it compared. Where the difference is
a documented divergence (behaviour abi/autograd.h documents, or a PyTorch 1.13 bug), the
family checks its exact conditions and raises Known instead: counted under its tag, not a
failure. Any Mismatch, and any exception of the fuzzer itself, is a finding: printed with the
seed, the program's log and the command that replays it, and the exit status is 1.
"""
import argparse
import collections
import gc
import os
import shlex
import sys
import traceback
import warnings

import torch

import agpy as A


class Mismatch(Exception):
    """libautograd and PyTorch disagree (value, metadata, or error vs success)."""


class Known(Exception):
    """A documented divergence: the program stops there and the tag is counted."""

    def __init__(self, tag):
        super().__init__(tag)
        self.tag = tag


def parse_seeds(text):
    """'N' is seed N alone, 'A:B' the seeds A..B-1."""
    if ":" in text:
        a, b = text.split(":", 1)
        return range(int(a), int(b))
    return range(int(text), int(text) + 1)


def replay_command(args, family, seed):
    script = os.path.abspath(sys.argv[0])
    return " ".join(shlex.quote(x) for x in (
        sys.executable, "-B", script, "--lib", args.lib, "--mode", family,
        "--seeds", str(seed), "-v"))


def main(description, families, default_seeds):
    """families: {name: run(seed, log, stats)}. Returns the exit status."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--lib", default=os.environ.get("AG_LIB"),
                    help="path of libautograd.so (default: $AG_LIB)")
    ap.add_argument("--seeds", default=default_seeds,
                    help="seed N, or range A:B (default %(default)s)")
    ap.add_argument("--mode", default="all", choices=["all"] + sorted(families),
                    help="which family of programs to run (default: all)")
    ap.add_argument("--findings", help="also append each finding to this file")
    ap.add_argument("--threads", type=int, help="ag_set_num_threads before running")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every program's log, not only those of findings")
    args = ap.parse_args()
    if not args.lib:
        ap.error("the library path is required: --lib PATH or AG_LIB=PATH")
    A.load(args.lib, args.threads)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    names = sorted(families) if args.mode == "all" else [args.mode]
    seeds = parse_seeds(args.seeds)

    stats = collections.Counter()
    knowns = collections.Counter()
    findings = 0
    out = open(args.findings, "a") if args.findings else None
    for family in names:
        for seed in seeds:
            log = []
            del A.CALLBACK_ERRORS[:]
            problem = None
            try:
                families[family](seed, log, stats)
                stats["programs"] += 1
            except Known as e:
                knowns[e.tag] += 1
                log.append("(documented divergence: %s)" % e.tag)
            except Mismatch as e:
                problem = "MISMATCH %s" % e
            except Exception:  # noqa: BLE001: a crash of the fuzzer fails the test too
                problem = "FUZZER ERROR\n%s" % traceback.format_exc()
            if A.CALLBACK_ERRORS and problem is None:
                problem = "FUZZER ERROR in a callback\n%s" % "\n".join(A.CALLBACK_ERRORS)
            if args.verbose:
                print("---- %s seed %d\n%s" % (family, seed, "\n".join(log)))
            if problem:
                findings += 1
                report = "==== %s seed %d: %s\nprogram:\n  %s\nreplay: %s\n" % (
                    family, seed, problem, "\n  ".join(log), replay_command(args, family, seed))
                sys.stdout.write(report)
                sys.stdout.flush()
                if out:
                    out.write(report + "\n")
                    out.flush()
    gc.collect()  # the programs' handles (cycles through closures) while LIB is loaded
    if out:
        out.close()
    print("seeds %s, families %s: %d programs ran to the end, %s" % (
        args.seeds, ",".join(names), stats["programs"],
        ", ".join("%s %d" % kv for kv in sorted(stats.items()) if kv[0] != "programs")))
    if knowns:
        print("documented divergences met (each stopped its program): %s" % ", ".join(
            "%s %d" % kv for kv in sorted(knowns.items())))
    compared = sum(v for k, v in stats.items() if k != "programs")
    if compared == 0 and findings == 0:
        print("FAIL: nothing was compared (a broken fuzzer passes nothing)")
        return 1
    print("%d finding(s)" % findings)
    return 1 if findings else 0
