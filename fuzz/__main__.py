"""`python -m fuzz TARGET [--runs N] [--seed S]`: run one fuzz target (reply | address) under atheris
(libFuzzer, coverage-guided) for N inputs; exit 0 and a summary line when nothing failed."""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("target", choices=("reply", "address"))
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to try (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (default 1: reproducible)")
    parser.add_argument("inputs", nargs="*", help="files to replay instead of fuzzing (a saved failure)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be positive")
    import atheris

    from fuzz.targets import TARGETS

    target = TARGETS[args.target]
    started = time.monotonic()
    print(f"fuzz {args.target}: {args.runs} inputs, seed {args.seed} (libFuzzer's 'Done N runs' at the end "
          "means none failed; a failure prints its input and exits non-zero)", file=sys.stderr, flush=True)
    del started
    from pathlib import Path

    artifacts = Path(__file__).resolve().parent / "artifacts"  # a failing input, to replay: python -m
    artifacts.mkdir(exist_ok=True)                               # fuzz TARGET fuzz/artifacts/crash-...
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}", "-print_final_stats=0",
                   "-max_len=256", f"-artifact_prefix={artifacts}/", *args.inputs], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
