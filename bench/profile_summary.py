"""Summarize a py-spy raw (collapsed stacks) profile: where the samples are, by function.

uv run python bench/profile_summary.py profile.txt [--top 25] [--filter ultrachat]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(args.path) as lines:
        for line in lines:
            stack, _, count_text = line.rstrip().rpartition(" ")
            count = int(count_text)
            total += count
            frames = stack.split(";")
            for frame in set(frames):
                if args.filter in frame:
                    inclusive[frame] += count
            own[frames[-1]] += count
    print(f"{total} samples\n\ninclusive (function and what it calls):")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:6.1f}%  {frame}")
    print("\nself (the function's own code):")
    for frame, count in own.most_common(args.top):
        print(f"{100 * count / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
